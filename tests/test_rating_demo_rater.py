"""The demo's SIMULATED raters score through real sessions and populate every agreement figure."""

import datetime as dt

from amgs.demo.rater import SIMULATED_RATERS, simulate, true_level
from amgs.demo.study import study_animals
from amgs.server.rating import data
from amgs.server.rating.pool import fill_pool
from amgs.server.rating.sampling import local_day_bounds
from tests.rating_helpers import add_score, open_db
from tests.server_support import server_config

DAY = dt.date(2026, 3, 2)
T0, _ = local_day_bounds(DAY, "UTC")


def test_simulated_raters_fill_the_agreement_page(tmp_path):
    config = server_config(
        tmp_path, rating={"per_cage_per_day": 12, "raters_per_item": 3, "repeat_share": 0.2}
    )
    conn = open_db(config).local().conn
    animals = study_animals()
    surgery_t = T0 + 6 * 3600
    for a in animals:
        for i in range(48):
            t = T0 + i * 1800
            level = true_level(animals, surgery_t, a.cage_id, t)
            add_score(
                conn,
                config.storage.state_dir,
                f"{a.cage_id}-{i}",
                a.cage_id,
                t,
                min(1, level / 2),
                mgs_au=level,
            )
        add_score(
            conn, config.storage.state_dir, f"{a.cage_id}-n", a.cage_id, T0 + 86400 + 5, 0.1, crop=False
        )
    assert fill_pool(conn, config, now=T0 + 86400 + 3600)["added"] == 84
    made = simulate(conn, config, animals, surgery_t, now=T0 + 86400 + 7200)
    assert made >= 2 * 84
    names = {r for (r,) in conn.execute("SELECT DISTINCT rater FROM ratings")}
    assert names == {n for n, _, _ in SIMULATED_RATERS} and all(n.startswith("simulated") for n in names)
    # items stay open for a person to score too (raters_per_item = 3)
    assert conn.execute("SELECT count(*) FROM rating_items WHERE state = 'open'").fetchone()[0] == 84
    g = data.summary(conn, config)["groups"][0]
    assert g["model_vs_human"]["pearson"]["r"] > 0.8
    assert g["inter_rater"]["icc2"]["icc"] > 0.6 and g["intra_rater"]["n_pairs"] > 0
    assert g["model_vs_human"]["pain"]["n"] > 0
