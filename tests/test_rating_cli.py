"""`amgs server export-ratings DIR` and `amgs server export agreement` on a collector with ratings."""

import csv
import datetime as dt
import io

from click.testing import CliRunner

from amgs.cli import main
from amgs.contract import AU_KEYS
from amgs.datasets import load_dataset
from amgs.server.rating import sessions
from amgs.server.rating.pool import fill_pool
from amgs.server.rating.sampling import local_day_bounds
from tests.rating_helpers import add_score, open_db
from tests.server_support import server_config

T0, _ = local_day_bounds(dt.date(2026, 3, 2), "UTC")


def toml_of(config, tmp_path, extra: str = ""):
    """The collector TOML the CLI reads: the test's database (SQLite, or PostgreSQL in test_pg_rating.py)."""
    storage = config.storage
    url = f'url = "{storage.url}"\n' if storage.url else ""
    (tmp_path / "server.toml").write_text(f'[storage]\nstate_dir = "{storage.state_dir}"\n{url}{extra}')
    return tmp_path / "server.toml"


def test_export_ratings_and_agreement_csv(tmp_path):
    config = server_config(tmp_path, rating={"per_cage_per_day": 6})
    cfg_file = toml_of(config, tmp_path, "[rating]\nper_cage_per_day = 6\n")
    runner = CliRunner()
    r = runner.invoke(main, ["server", "export-ratings", str(tmp_path / "x"), "--config", str(cfg_file)])
    assert r.exit_code != 0 and "no ratings yet" in r.output
    conn = open_db(config).local().conn
    for cage in ("C1", "C2"):
        for i in range(20):
            add_score(
                conn,
                config.storage.state_dir,
                f"{cage}-{i}",
                cage,
                T0 + i * 4000,
                i / 20,
                animal=f"A{cage}",
                synthetic=True,
            )
        add_score(conn, config.storage.state_dir, f"{cage}-n", cage, T0 + 86400 + 1, 0.1, crop=False)
    fill_pool(conn, config, now=T0 + 90000)
    for rater, v in (("ann", 0), ("bob", 2)):
        ref = sessions.open_session(conn, rater, config.rating, T0 + 90000)
        while (view := sessions.view(conn, ref))["token"]:
            sessions.submit(conn, ref, view["token"], dict.fromkeys(AU_KEYS, v), now=T0 + 90001)
    out = tmp_path / "export"
    r = runner.invoke(main, ["server", "export-ratings", str(out), "--config", str(cfg_file)])
    assert r.exit_code == 0, r.output
    assert "12 pain, 0 no pain" in r.output and "amgs model train" in r.output  # mean of 0 and 2 = 1 >= 1
    items = load_dataset(out)
    assert len(items) == 12 and {it.animal_id for it in items} == {"AC1", "AC2"}
    assert {it.meta["model_synthetic"] for it in items} == {"1"}  # the export says the model was synthetic
    r = runner.invoke(main, ["server", "export-ratings", str(out), "--config", str(cfg_file)])
    assert r.exit_code != 0 and "not an empty folder" in r.output
    r = runner.invoke(main, ["server", "export", "agreement", "--by", "cage_id", "--config", str(cfg_file)])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert {row["key"] for row in rows} == {"C1", "C2"}
    inter = [row for row in rows if row["comparison"] == "inter_rater" and row["metric"] == "icc_2_1"]
    assert len(inter) == 2 and all(row["n"] == "6" for row in inter)
    r = runner.invoke(main, ["server", "export", "agreement", "--by", "nope", "--config", str(cfg_file)])
    assert r.exit_code != 0


def test_user_add_with_the_rater_role(tmp_path):
    cfg_file = toml_of(server_config(tmp_path), tmp_path)
    runner = CliRunner()
    r = runner.invoke(
        main,
        [
            "server",
            "user",
            "add",
            "ann",
            "--role",
            "rater",
            "--password",
            "rater password 1",
            "--config",
            str(cfg_file),
        ],
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["server", "user", "list", "--config", str(cfg_file)])
    assert "ann\trater" in r.output
