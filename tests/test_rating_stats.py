"""Agreement statistics (server/rating/stats.py) against independent references.

- Shrout & Fleiss (1979) Table 2 (6 targets x 4 judges): their published ICC(1,1) = .17, ICC(2,1) = .29,
  ICC(3,1) = .71; the intervals as printed by pingouin 0.7.0 (``intraclass_corr``).
- Bland & Altman (1986) Lancet, peak expiratory flow, Wright vs mini Wright meter (first readings of 17
  subjects): mean difference -2.1, SD 38.8, SE of the bias 9.4, SE of the limits 16.3, t(16) = 2.12.
- Cohen's kappa: the two-rater 2 x 2 textbook example (agreement .70, chance .50, kappa .40) and a 3 x 3
  table of 100 items (kappa .676), with standard errors and intervals from
  statsmodels 0.14 ``cohens_kappa`` (unweighted, linear and quadratic weights).
- Distribution quantiles from scipy 1.17.

The reference numbers were produced by ``scripts/rating_stats_reference.py`` in a separate virtual
environment holding pingouin, statsmodels and scipy (too heavy for the collector or the test extra);
when pingouin is importable, the last test also compares random tables live.
"""

import math

import numpy as np
import pytest

from amgs.server.rating import stats as S

SF_TABLE = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]

WRIGHT = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
MINI = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]

FLEISS_3x3 = [[75, 1, 4], [5, 4, 1], [0, 0, 10]]


@pytest.mark.parametrize(
    "kind, published, ci, exact",
    [
        ("ICC1", 0.17, (-0.13, 0.72), 0.165742),
        ("ICC2", 0.29, (0.02, 0.76), 0.289764),
        ("ICC3", 0.71, (0.34, 0.95), 0.714841),
    ],
)
def test_icc_matches_shrout_fleiss_1979(kind, published, ci, exact):
    r = S.icc(SF_TABLE, kind)
    assert r["n"] == 6 and r["k"] == 4
    assert round(r["icc"], 2) == published
    assert r["icc"] == pytest.approx(exact, abs=1e-6)  # pingouin 0.7.0
    assert (round(r["ci_low"], 2), round(r["ci_high"], 2)) == ci  # pingouin 0.7.0 (2 decimals)


def test_icc_intervals_to_three_decimals():
    # this implementation's intervals, which pingouin prints rounded to two decimals (above)
    r2, r3 = S.icc(SF_TABLE, "ICC2"), S.icc(SF_TABLE, "ICC3")
    assert (round(r2["ci_low"], 3), round(r2["ci_high"], 3)) == (0.019, 0.761)
    assert (round(r3["ci_low"], 3), round(r3["ci_high"], 3)) == (0.342, 0.946)
    assert r3["F"] == pytest.approx(11.027248, abs=1e-6)


def test_icc_absolute_agreement_penalises_a_constant_offset():
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 2, 200)
    table = np.column_stack([truth, truth + 0.5])
    assert S.icc(table, "ICC3")["icc"] == pytest.approx(1.0)
    assert S.icc(table, "ICC2")["icc"] < 0.8
    assert S.icc(np.column_stack([truth, truth]), "ICC2")["icc"] == pytest.approx(1.0)


def test_icc_drops_incomplete_rows_and_refuses_too_little():
    table = [[1, 1], [2, 2.5], [float("nan"), 1], [0, 0.2]]
    assert S.icc(table)["n"] == 3
    assert S.icc([[1, 2]])["icc"] is None
    assert S.icc([[1, 1], [1, 1]])["icc"] is None  # no variance at all


def test_bland_altman_matches_bland_altman_1986():
    r = S.bland_altman(WRIGHT, MINI)
    assert r["n"] == 17
    assert round(r["bias"], 1) == -2.1 and round(r["sd"], 1) == 38.8
    assert r["loa_low"] == pytest.approx(r["bias"] - 1.959964 * r["sd"], abs=1e-4)
    assert r["loa_high"] == pytest.approx(r["bias"] + 1.959964 * r["sd"], abs=1e-4)
    # published: bias CI -2.1 +/- 2.12 x 9.4 = -22.1 to 17.9
    assert round(r["bias_ci_low"], 0) == -22 and round(r["bias_ci_high"], 0) == 18
    se_bias = (r["bias_ci_high"] - r["bias"]) / S.t_ppf(0.975, 16)
    assert round(se_bias, 1) == 9.4
    # published: SE of the limits sqrt(3 s^2 / n) = 16.3, so each limit +/- 2.12 x 16.3 = 34.6
    half = r["loa_low_ci_high"] - r["loa_low"]
    assert round(half / S.t_ppf(0.975, 16), 1) == 16.3
    assert round(half, 0) == 35
    assert r["loa_high_ci_high"] - r["loa_high"] == pytest.approx(half)


def test_pearson_with_fisher_interval():
    r = S.pearson(WRIGHT, MINI)
    assert r["r"] == pytest.approx(0.9432794468909461, abs=1e-6)  # scipy.stats.pearsonr
    assert (round(r["ci_low"], 2), round(r["ci_high"], 2)) == (0.85, 0.98)  # pingouin.corr
    z = math.atanh(r["r"])
    assert r["ci_low"] == pytest.approx(math.tanh(z - 1.959964 / math.sqrt(14)), abs=1e-5)
    assert S.pearson([1, 2], [1, 2])["r"] is None or S.pearson([1, 2], [1, 2])["ci_low"] is None
    assert S.pearson([1, 1, 1, 1], [1, 2, 3, 4])["r"] is None


def test_cohen_kappa_textbook_2x2():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> po .70, pe .50, kappa .40
    r = S.kappa_from_table([[20, 5], [10, 15]])
    assert r["p_observed"] == pytest.approx(0.7) and r["p_expected"] == pytest.approx(0.5)
    assert r["kappa"] == pytest.approx(0.4)
    assert r["se"] == pytest.approx(0.12699606293110033, abs=1e-6)  # statsmodels std_kappa
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert S.cohen_kappa(a, b, categories=["y", "n"])["kappa"] == pytest.approx(0.4)


@pytest.mark.parametrize(
    "weights, kappa, se, low, high",
    [
        (None, 0.676470588235294, 0.08770295347521254, 0.5045759580860855, 0.8483652183845026),
        ("linear", 0.7222222222222223, 0.08430095392318866, 0.556995388670402, 0.8874490557740426),
        ("quadratic", 0.7553191489361702, 0.08670713249380735, 0.5853762920455652, 0.9252620058267753),
    ],
)
def test_kappa_3x3_matches_statsmodels(weights, kappa, se, low, high):
    r = S.kappa_from_table(FLEISS_3x3, weights)
    assert r["kappa"] == pytest.approx(kappa, abs=1e-6)
    assert r["se"] == pytest.approx(se, abs=1e-6)
    assert (r["ci_low"], r["ci_high"]) == (pytest.approx(low, abs=1e-6), pytest.approx(high, abs=1e-6))


def test_binary_agreement_and_wilson():
    model = [True] * 30 + [False] * 70
    human = [True] * 25 + [False] * 5 + [True] * 10 + [False] * 60
    r = S.binary_agreement(model, human)
    assert r["table"] == {"tp": 25, "fp": 5, "fn": 10, "tn": 60}
    assert r["accuracy"]["value"] == pytest.approx(0.85)
    # Wilson 95 % for 85/100 (Newcombe 1998 method 3): 0.7672 .. 0.9069
    assert (round(r["accuracy"]["ci_low"], 4), round(r["accuracy"]["ci_high"], 4)) == (0.7672, 0.9069)
    assert r["sensitivity"]["n"] == 35 and r["specificity"]["n"] == 65
    assert S.proportion(0, 0)["value"] is None


@pytest.mark.parametrize(
    "fn, args, expected",
    [
        (S.f_ppf, (0.975, 5, 4.785), 7.498880528274082),
        (S.f_ppf, (0.975, 4.785, 5), 7.190768047291414),
        (S.f_ppf, (0.95, 1, 1), 161.4476387975882),
        (S.f_ppf, (0.999, 3, 200), 5.634135648443538),
        (S.t_ppf, (0.975, 16), 2.1199052992212546),
    ],
)
def test_quantiles_match_scipy(fn, args, expected):
    assert fn(*args) == pytest.approx(expected, rel=1e-9)


def test_live_against_pingouin_when_installed():
    pg = pytest.importorskip("pingouin")
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(7)
    for _ in range(5):
        n, k = rng.integers(5, 40), rng.integers(2, 5)
        table = rng.normal(size=(n, 1)) + rng.normal(scale=0.7, size=(n, k)) + rng.normal(size=k)
        df = pd.DataFrame([(i, j, table[i, j]) for i in range(n) for j in range(k)], columns=["t", "r", "v"])
        ref = pg.intraclass_corr(df, "t", "r", "v").set_index("Type")
        for kind, name in (("ICC1", "ICC(1,1)"), ("ICC2", "ICC(A,1)"), ("ICC3", "ICC(C,1)")):
            mine = S.icc(table, kind)
            assert mine["icc"] == pytest.approx(ref.loc[name, "ICC"], abs=1e-6)
            lo, hi = ref.loc[name, "CI95"]
            assert (mine["ci_low"], mine["ci_high"]) == (
                pytest.approx(lo, abs=0.006),
                pytest.approx(hi, abs=0.006),
            )


def test_kappa_interval_stays_within_its_range():
    r = S.kappa_from_table([[6, 0], [1, 5]])
    assert r["ci_high"] == 1.0 and -1 <= r["ci_low"] < r["kappa"]
