"""Evaluation figures against hand computations on a fixed tiny set."""

import math

import numpy as np
import pytest

from amgs.models import metrics

# 8 images: label 1 = pain. Decision at 0.5.
LABELS = np.array([1, 1, 1, 1, 0, 0, 0, 0])
P = np.array([0.9, 0.8, 0.4, 0.6, 0.3, 0.6, 0.1, 0.2])
# predicted pain: 0.9 0.8 0.6 (labels 1) and 0.6 (label 0) -> TP 3, FN 1 (0.4), FP 1, TN 3


def test_confusion_sensitivity_specificity_by_hand():
    c = metrics.confusion(LABELS, P, 0.5)
    assert (c.tp, c.fp, c.tn, c.fn) == (3, 1, 3, 1)
    assert c.accuracy == 6 / 8
    assert c.sensitivity == 3 / 4 and c.specificity == 3 / 4
    assert c.matrix().tolist() == [[3, 1], [1, 3]]
    # threshold is inclusive, as in amgs.scoring
    assert metrics.confusion([1], [0.5], 0.5).tp == 1


def test_roc_auc_counts_pairs_with_ties_half():
    # 16 (pain, no pain) pairs. Pain scores 0.9, 0.8, 0.4, 0.6 vs no pain 0.3, 0.6, 0.1, 0.2:
    # 0.9 beats 4, 0.8 beats 4, 0.6 beats 3 and ties 1 (0.5), 0.4 beats 3 -> 14.5 / 16
    assert metrics.roc_auc(LABELS, P) == pytest.approx(14.5 / 16)
    assert metrics.roc_auc([1, 1, 0], [0.2, 0.3, 0.9]) == 0.0
    assert math.isnan(metrics.roc_auc([1, 1], [0.2, 0.3]))
    fpr, tpr = metrics.roc_curve(LABELS, P)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_reliability_bins_by_hand():
    r = metrics.reliability(LABELS, P, bins=2)  # bins [0, .5) and [.5, 1]
    assert r.counts.tolist() == [4, 4]
    # low bin: 0.4 (1), 0.3, 0.1, 0.2 (0) -> mean pred 0.25, observed 0.25
    # high bin: 0.9, 0.8, 0.6 (1), 0.6 (0) -> mean pred 0.725, observed 0.75
    assert r.mean_predicted.tolist() == pytest.approx([0.25, 0.725])
    assert r.observed.tolist() == pytest.approx([0.25, 0.75])
    assert r.ece == pytest.approx((4 * 0.0 + 4 * 0.025) / 8)


def test_pearson_and_icc_by_hand():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = np.array([2.0, 4.0, 5.0, 4.0])
    mx, my = x.mean(), y.mean()
    r = np.sum((x - mx) * (y - my)) / math.sqrt(np.sum((x - mx) ** 2) * np.sum((y - my) ** 2))
    assert metrics.pearson_r(x, y) == pytest.approx(r)
    assert math.isnan(metrics.pearson_r([1, 1, 1], [1, 2, 3]))
    # ICC by hand, two raters x, y over 4 targets (Shrout & Fleiss 1979 mean squares):
    data = np.column_stack([x, y])
    n, k = data.shape
    g = data.mean()
    msr = k * np.sum((data.mean(1) - g) ** 2) / (n - 1)
    msc = n * np.sum((data.mean(0) - g) ** 2) / (k - 1)
    mse = (np.sum((data - g) ** 2) - msr * (n - 1) - msc * (k - 1)) / ((n - 1) * (k - 1))
    assert metrics.icc(x, y, "consistency") == pytest.approx((msr - mse) / (msr + mse))
    assert metrics.icc(x, y, "agreement") == pytest.approx((msr - mse) / (msr + mse + k * (msc - mse) / n))
    # perfect agreement is 1; a constant offset keeps consistency at 1 but lowers agreement
    assert metrics.icc(x, x) == pytest.approx(1.0)
    assert metrics.icc(x, x + 1, "consistency") == pytest.approx(1.0)
    assert metrics.icc(x, x + 1, "agreement") < 1.0


def test_agreement_and_per_animal():
    a = metrics.agreement([0.1, 0.6, 0.49, 0.9], [0.12, 0.4, 0.51, 0.9])
    assert a.identical_decisions == 0.5 and a.n == 4
    assert a.mean_abs_dp == pytest.approx((0.02 + 0.2 + 0.02 + 0) / 4)
    assert a.max_abs_dp == pytest.approx(0.2)
    rows = metrics.per_animal(
        np.array(["m1", "m1", "m2", ""]),
        np.array([0.2, 0.6, 0.9, 0.1]),
        np.array([0, 1, 1, 0]),
        np.array([0.5, 1.5, np.nan, 0.0]),
    )
    by = {r["animal"]: r for r in rows}
    assert by["m1"]["n"] == 2 and by["m1"]["mean_amgs"] == pytest.approx(0.4)
    assert by["m1"]["sem_amgs"] == pytest.approx(np.std([0.2, 0.6], ddof=1) / math.sqrt(2))
    assert by["m1"]["fraction_called_pain"] == 0.5 and by["m1"]["mean_human_mgs"] == pytest.approx(1.0)
    assert by["m2"]["mean_human_mgs"] is None and by["m2"]["sem_amgs"] is None
    assert by["(unknown)"]["n"] == 1
