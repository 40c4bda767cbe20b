"""Evaluation figures for pain / no-pain models, in plain numpy (small enough to check by hand).

Conventions: label 1 = pain (the positive class); ``p`` = P(pain); decision ``p >= threshold`` (as in
amgs.scoring). Sensitivity = TP / (TP + FN), specificity = TN / (TN + FP). ROC AUC is the Mann-Whitney
probability that a random pain image scores above a random no-pain one (ties count one half).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Confusion:
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.n if self.n else float("nan")

    @property
    def sensitivity(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def specificity(self) -> float:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else float("nan")

    def matrix(self) -> np.ndarray:
        """Rows = true (no pain, pain), columns = predicted (no pain, pain)."""
        return np.array([[self.tn, self.fp], [self.fn, self.tp]])


def confusion(labels: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> Confusion:
    y = np.asarray(labels).astype(bool)
    pred = np.asarray(p) >= threshold
    return Confusion(
        tp=int(np.sum(pred & y)),
        fp=int(np.sum(pred & ~y)),
        tn=int(np.sum(~pred & ~y)),
        fn=int(np.sum(~pred & y)),
    )


def roc_auc(labels: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve via average ranks (Mann-Whitney U); NaN when only one class is present."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(p, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def roc_curve(labels: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0,0) to (1,1)."""
    y = np.asarray(labels).astype(bool)
    s = np.asarray(p, dtype=np.float64)
    thresholds = np.unique(s)[::-1]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    tpr = [0.0] + [float(np.sum((s >= t) & y) / n_pos) for t in thresholds]
    fpr = [0.0] + [float(np.sum((s >= t) & ~y) / n_neg) for t in thresholds]
    return np.array(fpr), np.array(tpr)


@dataclass(frozen=True)
class Reliability:
    """Calibration: per bin of predicted P(pain), the mean prediction and the observed pain fraction."""

    edges: np.ndarray
    mean_predicted: np.ndarray  # NaN for empty bins
    observed: np.ndarray
    counts: np.ndarray

    @property
    def ece(self) -> float:
        """Expected calibration error: count-weighted mean |observed - predicted| over non-empty bins."""
        ok = self.counts > 0
        if not ok.any():
            return float("nan")
        gap = np.abs(self.observed[ok] - self.mean_predicted[ok])
        return float(np.sum(gap * self.counts[ok]) / self.counts[ok].sum())


def reliability(labels: np.ndarray, p: np.ndarray, bins: int = 10) -> Reliability:
    y = np.asarray(labels).astype(np.float64)
    s = np.asarray(p, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(s, edges[1:-1], right=False), 0, bins - 1)
    counts = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(idx, weights=s, minlength=bins) / counts
        observed = np.bincount(idx, weights=y, minlength=bins) / counts
    return Reliability(edges, mean_pred, observed, counts)


def pearson_r(x: np.ndarray, y: np.ndarray) -> float:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def icc(x: np.ndarray, y: np.ndarray, kind: str = "agreement") -> float:
    """Intraclass correlation of two raters (e.g. model vs human) over the same images (Shrout & Fleiss).

    ``agreement``: ICC(2,1), two-way random, absolute agreement (same scale required).
    ``consistency``: ICC(3,1), two-way mixed, consistency (an additive offset is not penalized).
    """
    data = np.column_stack([np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)])
    data = data[np.isfinite(data).all(axis=1)]
    n, k = data.shape
    if n < 3:
        return float("nan")
    grand = data.mean()
    ss_rows = k * np.sum((data.mean(axis=1) - grand) ** 2)
    ss_cols = n * np.sum((data.mean(axis=0) - grand) ** 2)
    ss_total = np.sum((data - grand) ** 2)
    ss_err = ss_total - ss_rows - ss_cols
    msr = ss_rows / (n - 1)
    msc = ss_cols / (k - 1)
    mse = ss_err / ((n - 1) * (k - 1))
    if kind == "consistency":
        den = msr + (k - 1) * mse
        return float((msr - mse) / den) if den else float("nan")
    if kind != "agreement":
        raise ValueError(f"icc kind must be 'agreement' or 'consistency', got {kind!r}")
    den = msr + (k - 1) * mse + k * (msc - mse) / n
    return float((msr - mse) / den) if den else float("nan")


@dataclass(frozen=True)
class Agreement:
    """How closely two models (float reference vs int8) agree on the same images."""

    identical_decisions: float
    mean_abs_dp: float
    max_abs_dp: float
    n: int


def agreement(p_a: np.ndarray, p_b: np.ndarray, threshold: float = 0.5) -> Agreement:
    a, b = np.asarray(p_a, dtype=np.float64), np.asarray(p_b, dtype=np.float64)
    d = np.abs(a - b)
    return Agreement(
        identical_decisions=float(np.mean((a >= threshold) == (b >= threshold))),
        mean_abs_dp=float(d.mean()),
        max_abs_dp=float(d.max()),
        n=len(a),
    )


def per_animal(
    animals: np.ndarray,
    p: np.ndarray,
    labels: np.ndarray,
    human_mgs: np.ndarray | None,
    threshold: float = 0.5,
) -> list[dict[str, float | int | str | None]]:
    """Per animal: n images, mean aMGS (= mean P(pain)) with SEM, fraction called pain, true pain fraction,
    and mean human MGS where scored."""
    rows = []
    animals = np.asarray(animals, dtype=str)
    for a in sorted(set(animals.tolist())):
        m = animals == a
        vals = np.asarray(p, dtype=np.float64)[m]
        sem = float(vals.std(ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else None
        human = None
        if human_mgs is not None:
            h = np.asarray(human_mgs, dtype=np.float64)[m]
            h = h[np.isfinite(h)]
            human = float(h.mean()) if len(h) else None
        rows.append(
            {
                "animal": a or "(unknown)",
                "n": int(m.sum()),
                "mean_amgs": float(vals.mean()),
                "sem_amgs": sem,
                "fraction_called_pain": float(np.mean(vals >= threshold)),
                "fraction_labelled_pain": float(np.mean(np.asarray(labels)[m] == 1)),
                "mean_human_mgs": human,
            }
        )
    return rows
