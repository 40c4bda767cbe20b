"""Human agreement per model version and of shadow candidates (server/rating/by_model.py), checked
against figures worked out by hand on a small fixture."""

from __future__ import annotations

import math

import pytest

from amgs.contract import AU_KEYS
from amgs.server.rating.agreement import RatedItem, Rating
from amgs.server.rating.by_model import MIN_ITEMS, compute, figures

SHA = "a" * 64
CAND = "c" * 64
# (ann's value on every unit, bob's) -> human MGS = their mean: 0, .5, 1, 1.5, 2, 0, .5, 1, 1.5, 2
HUMANS = [(0, 0), (0, 1), (1, 1), (1, 2), (2, 2), (0, 0), (1, 0), (1, 1), (2, 1), (2, 2)]
HUMAN_MGS = [(a + b) / 2 for a, b in HUMANS]
MODEL_AU = [0.2, 0.4, 1.2, 1.2, 1.8, 0.4, 0.6, 0.8, 1.6, 1.4]
P_PAIN = [0.1, 0.3, 0.6, 0.7, 0.9, 0.2, 0.6, 0.4, 0.8, 0.9]  # model's call: pain at P >= 0.5
CAND_AU = [0.0, 0.5, 1.0, 1.5, 2.0, 0.0, 0.5, 1.0, 1.5, 2.0]
CAND_P = [0.0, 0.2, 0.5, 0.8, 1.0, 0.0, 0.2, 0.5, 0.8, 1.0]


def au(v):
    return dict.fromkeys(AU_KEYS, v)


def fixture():
    items = [
        RatedItem(i + 1, 1000.0 + i, "lab-mgs 1.0", "dev1", "C1" if i < 6 else "C2", "", P_PAIN[i],
                  P_PAIN[i] >= 0.5, MODEL_AU[i], "lab1", SHA)
        for i in range(10)
    ]  # fmt: skip
    ratings = [Rating(i + 1, "ann", 1, au(a), rated_at=1.0) for i, (a, _) in enumerate(HUMANS)]
    ratings += [Rating(i + 1, "bob", 1, au(b), rated_at=2.0) for i, (_, b) in enumerate(HUMANS)]
    ratings.append(Rating(3, "ann", 2, au(2), rated_at=3.0))  # a second showing: not in the consensus
    # item 11: ann cannot score it, bob can (half its raters: left out); item 12: nobody can
    items += [RatedItem(11, 2000.0, "lab-mgs 1.0", "dev1", "C2", "", 0.9, True, 1.9, "lab1", SHA)]
    items += [RatedItem(12, 2001.0, "lab-mgs 1.0", "dev1", "C2", "", 0.1, False, 0.1, "lab1", SHA)]
    ratings += [Rating(11, "ann", 1, unscorable=True), Rating(11, "bob", 1, au(0), rated_at=4.0)]
    ratings += [Rating(12, "ann", 1, unscorable=True), Rating(12, "cat", 1, unscorable=True)]
    return items, ratings


def hand_r(x, y):
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy)


def hand_icc_a1(x, y):
    """ICC(A,1) of n targets x 2 raters (McGraw & Wong): (MSR - MSE) / (MSR + MSE + 2 (MSC - MSE) / n)."""
    n, k = len(x), 2
    grand = (sum(x) + sum(y)) / (n * k)
    rows = [(a + b) / 2 for a, b in zip(x, y, strict=True)]
    ss_r = k * sum((m - grand) ** 2 for m in rows)
    ss_c = n * ((sum(x) / n - grand) ** 2 + (sum(y) / n - grand) ** 2)
    ss_t = sum((v - grand) ** 2 for v in [*x, *y])
    msr, msc = ss_r / (n - 1), ss_c / (k - 1)
    mse = (ss_t - ss_r - ss_c) / ((n - 1) * (k - 1))
    return (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)


def test_model_figures_match_a_hand_computation():
    items, ratings = fixture()
    f = figures(items, ratings, cutoff=1.0)
    assert (f["n_items"], f["n_unscorable"], f["n_scored"], f["n_raters"]) == (12, 2, 10, 3)
    assert f["pearson_au"]["value"] == pytest.approx(hand_r(MODEL_AU, HUMAN_MGS), abs=1e-6)
    assert f["pearson_p_pain"]["value"] == pytest.approx(hand_r(P_PAIN, HUMAN_MGS), abs=1e-6)
    assert f["icc_au"]["value"] == pytest.approx(hand_icc_a1(MODEL_AU, HUMAN_MGS), abs=1e-6)
    assert f["pearson_au"]["n"] == f["icc_au"]["n"] == f["accuracy"]["n"] == 10
    # human pain (MGS >= 1): items 3, 4, 5, 8, 9, 10; model pain (P >= .5): 3, 4, 5, 7, 9, 10
    # -> tp 5 (3, 4, 5, 9, 10), fp 1 (7), fn 1 (8), tn 3 (1, 2, 6): accuracy 8/10
    assert f["accuracy"]["value"] == pytest.approx(0.8)
    po, pe = 0.8, 0.6 * 0.6 + 0.4 * 0.4  # both call 6 of 10 pain
    assert f["kappa"]["value"] == pytest.approx((po - pe) / (1 - pe), abs=1e-6)
    assert f["accuracy"]["ci_low"] < 0.8 < f["accuracy"]["ci_high"]
    assert not any(f[k]["too_few"] for k in ("pearson_au", "pearson_p_pain", "icc_au", "accuracy", "kappa"))


def test_fewer_than_ten_items_give_no_figure():
    items, ratings = fixture()
    f = figures(items[:9], ratings, cutoff=1.0)
    assert MIN_ITEMS == 10 and f["n_scored"] == 9
    for k in ("pearson_au", "pearson_p_pain", "icc_au", "accuracy", "kappa"):
        assert f[k] == {"value": None, "ci_low": None, "ci_high": None, "n": 9, "too_few": True}


def test_per_model_version_and_the_candidate_on_the_same_faces():
    items, ratings = fixture()
    other = RatedItem(20, 3000.0, "amgs-default 0.3", "dev2", "C9", "", 0.5, True, 1.0, "lab1", "")
    shadow = [(i + 1, CAND, "lab-mgs", "2.0", CAND_P[i], "pain" if CAND_P[i] >= 0.5 else "no pain",
               CAND_AU[i]) for i in range(10)]  # fmt: skip
    shadow.append((999, CAND, "lab-mgs", "2.0", 0.5, "pain", 1.0))  # no rated item: ignored
    registered = {SHA: {"name": "lab-mgs", "version": "1.0", "synthetic": False}}
    out = compute([*items, other], [*ratings, Rating(20, "ann", 1, au(1))], shadow, registered, 1.0)
    assert out["human_pain_cutoff"] == 1.0 and out["min_items"] == MIN_ITEMS
    mine, theirs = out["models"]
    assert mine["model"] == "lab-mgs 1.0" and mine["registered"] and mine["sha256"] == SHA
    assert mine["pearson_au"] == figures(items, ratings, 1.0)["pearson_au"]
    assert theirs["model"] == "amgs-default 0.3" and not theirs["registered"] and theirs["sha256"] is None
    assert theirs["n_items"] == 1 and theirs["pearson_au"]["too_few"]

    rows = {r["cage_id"]: r for r in out["shadow"]}
    assert set(rows) == {"all", "C1", "C2"} and rows["all"]["candidate"] == "lab-mgs 2.0"
    everything = rows["all"]
    assert everything["active"] == ["lab-mgs 1.0"]
    assert everything["candidate_vs_human"]["n_scored"] == 10
    assert everything["candidate_vs_human"]["pearson_au"]["value"] == pytest.approx(1.0)
    assert everything["candidate_vs_human"]["accuracy"]["value"] == pytest.approx(1.0)
    assert everything["candidate_vs_human"]["pearson_p_pain"]["value"] == pytest.approx(
        hand_r(CAND_P, HUMAN_MGS), abs=1e-6
    )
    assert everything["active_vs_human"]["pearson_au"] == mine["pearson_au"]  # the same ten faces
    assert (
        rows["C1"]["candidate_vs_human"]["n_scored"] == 6
        and rows["C1"]["candidate_vs_human"]["icc_au"]["too_few"]
    )
