"""Agreement figures from ratings (server/rating/agreement.py): definitions, groupings, tidy rows."""

import datetime as dt

import numpy as np
import pytest

from amgs.contract import AU_KEYS
from amgs.server.rating import stats
from amgs.server.rating.agreement import (
    RatedItem,
    Rating,
    agreement,
    agreement_by,
    consensus,
    tidy_rows,
)

T0 = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC).timestamp()


def au(*v):
    return dict(zip(AU_KEYS, v, strict=True))


def simulate(n=120, raters=("ann", "bob", "cat"), bias=0.2, noise=0.25, repeat_every=5, seed=0):
    rng = np.random.default_rng(seed)
    items, ratings = [], []
    for i in range(n):
        truth = rng.uniform(0, 2)
        model_mgs = float(np.clip(truth + bias + rng.normal(0, 0.1), 0, 2))
        items.append(
            RatedItem(
                i,
                T0 + i * 3600,
                "m 1.0" if i % 2 else "m 2.0",
                f"dev{i % 3}",
                f"c{i % 6}",
                "lap" if i % 6 < 3 else "sham",
                model_mgs / 2,
                model_mgs >= 1.0,
                model_mgs,
            )
        )
        for r in raters:
            for occ in (1, 2) if i % repeat_every == 0 else (1,):
                values = np.clip(np.rint(truth + rng.normal(0, noise, 5)), 0, 2).astype(int)
                ratings.append(Rating(i, r, occ, au(*map(int, values)), False, T0 + i * 3600 + occ))
    return items, ratings


def test_consensus_is_the_pooled_mean_of_visible_units_and_unscorable_majority():
    ratings = [
        Rating(1, "a", 1, au(2, 2, None, 2, 2)),  # mean 2 over 4 visible units
        Rating(1, "b", 1, au(0, 0, 0, 0, 0)),
        Rating(1, "b", 2, au(2, 2, 2, 2, 2)),  # second showing: not in the consensus
        Rating(2, "a", 1, unscorable=True),
        Rating(2, "b", 1, au(1, 1, 1, 1, 1)),
        Rating(3, "a", 1, unscorable=True),
        Rating(3, "b", 1, unscorable=True),
        Rating(3, "c", 1, au(1, 1, 1, 1, 1)),
    ]
    c = consensus(ratings)
    assert c[1].mgs == pytest.approx(8 / 9) and c[1].n_raters == 2 and not c[1].unscorable
    assert c[2].unscorable and c[2].mgs == 1.0  # half said not scorable: left out of model vs human
    assert c[3].unscorable
    assert Rating(9, "x", 1, au(None, None, None, None, None)).mgs is None


def test_model_vs_human_recovers_an_injected_bias():
    items, ratings = simulate(bias=0.2)
    r = agreement(items, ratings, cutoff=1.0)
    mh = r["model_vs_human"]
    assert mh["n_items"] == 120 and mh["n_scored"] == 120
    assert mh["bland_altman"]["bias"] == pytest.approx(0.2, abs=0.08)
    assert mh["bland_altman"]["bias_ci_low"] < mh["bland_altman"]["bias"] < mh["bland_altman"]["bias_ci_high"]
    assert mh["pearson"]["r"] > 0.9
    # absolute agreement sits below consistency when there is a bias
    cons = consensus(ratings)
    table = [[it.mgs_au, cons[it.item_id].mgs] for it in items]
    assert mh["icc_a1"]["icc"] == stats.icc(table, "ICC2")["icc"] < stats.icc(table, "ICC3")["icc"]
    assert mh["pain"]["n"] == 120 and 0.7 < mh["pain"]["accuracy"]["value"] <= 1
    assert len(mh["points"]) == 120
    assert r["n_ratings"] == len(ratings) and r["raters"] == ["ann", "bob", "cat"]


def test_inter_and_intra_rater():
    items, ratings = simulate(noise=0.2)
    r = agreement(items, ratings, cutoff=1.0)
    ir = r["inter_rater"]
    assert ir["raters"] == ["ann", "bob", "cat"] and ir["icc2"]["n"] == 120 and ir["icc2"]["k"] == 3
    assert ir["icc2"]["icc"] > 0.8
    assert set(ir["au_kappa"]) == set(AU_KEYS) and all(k["kappa"] > 0.5 for k in ir["au_kappa"].values())
    intra = r["intra_rater"]
    assert intra["n_pairs"] == 3 * 24 and set(intra["per_rater"]) == {"ann", "bob", "cat"}
    assert intra["pooled"]["icc"] > 0.8 and intra["per_rater"]["ann"]["n"] == 24
    one = agreement(items, [x for x in ratings if x.rater == "ann"], cutoff=1.0)
    assert one["inter_rater"]["icc2"]["icc"] is None and one["inter_rater"]["raters"] == []


def test_incomplete_designs_use_the_largest_complete_block():
    items, ratings = simulate(n=60, raters=("a", "b", "c", "d"))
    # d rated only 10 items: adding d would lose most of the block, so it stays out
    ratings = [r for r in ratings if r.rater != "d" or r.item_id < 10]
    ir = agreement(items, ratings, cutoff=1.0)["inter_rater"]
    assert ir["raters"] == ["a", "b", "c"] and ir["icc2"]["n"] == 60


def test_groupings_and_tidy_rows():
    items, ratings = simulate()
    by_model = agreement_by(items, ratings, "model", cutoff=1.0)
    assert [g["key"] for g in by_model] == ["m 1.0", "m 2.0"]
    assert sum(g["model_vs_human"]["n_items"] for g in by_model) == 120
    groups = agreement_by(items, ratings, "group_id", cutoff=1.0)
    assert [g["key"] for g in groups] == ["lap", "sham"]
    weeks = agreement_by(items, ratings, "week", cutoff=1.0)
    assert weeks[0]["key"] == "2026-W10" and len(weeks) == 1  # 120 hours from Monday noon
    assert [g["key"] for g in agreement_by(items, ratings, "month", cutoff=1.0)] == ["2026-03"]
    with pytest.raises(ValueError):
        agreement_by(items, ratings, "animal_name", cutoff=1.0)
    rows = tidy_rows(by_model[0])
    got = {(r["comparison"], r["metric"]): r for r in rows}
    mh = by_model[0]["model_vs_human"]
    assert got[("model_vs_human", "icc_a1")]["value"] == mh["icc_a1"]["icc"]
    assert got[("model_vs_human", "ba_loa_high")]["ci_high"] == mh["bland_altman"]["loa_high_ci_high"]
    assert got[("model_vs_human", "pain_kappa")]["n"] == mh["pain"]["n"]
    assert got[("intra_rater", "icc_a1")]["n"] == by_model[0]["intra_rater"]["n_pairs"]
    assert all(r["by"] == "model" and r["key"] == "m 1.0" for r in rows)


def test_summary_is_cached_until_a_rating_changes(tmp_path):
    from amgs.server.rating import data
    from tests.rating_helpers import open_db
    from tests.server_support import server_config

    config = server_config(tmp_path)
    conn = open_db(config).local().conn
    conn.execute(
        "INSERT INTO rating_items (item_id, msg_id, sampled_at, day, stratum, t, device_id, cage_id, mgs_au, is_pain) "
        "VALUES (1, 'm1', 1, 'd', 'random', 1, 'dev', 'C1', 1.0, 1), (2, 'm2', 1, 'd', 'random', 1, 'dev', 'C1', 0.2, 0)"
    )
    cols = ", ".join("au_" + k for k in AU_KEYS)
    conn.execute(f"INSERT INTO ratings (item_id, rater, rated_at, {cols}) VALUES (1, 'a', 1, 1, 1, 1, 1, 1)")
    first = data.summary(conn, config)
    assert data.summary(conn, config)["groups"] is first["groups"]  # cached
    conn.execute(f"INSERT INTO ratings (item_id, rater, rated_at, {cols}) VALUES (2, 'a', 2, 0, 0, 0, 0, 0)")
    second = data.summary(conn, config)
    assert second["groups"] is not first["groups"] and second["groups"][0]["model_vs_human"]["n_items"] == 2
    conn.execute("UPDATE ratings SET au_ot = 2, changed_at = 5 WHERE item_id = 2")
    assert data.summary(conn, config)["groups"] is not second["groups"]
