"""Temperature scaling (Guo et al. 2017): one number that makes P(pain) mean what it says, fitted on held-out data.

P(pain) = sigmoid(log-odds / T). T is chosen to minimize the negative log-likelihood of held-out labels;
T > 1 softens an over-confident model, T < 1 sharpens an under-confident one. The decision at 0.5 (log-odds
0) never moves, so accuracy, sensitivity and specificity are unchanged by it; only confidence is.
"""

from __future__ import annotations

import numpy as np

T_RANGE = (0.05, 20.0)


def nll(log_odds: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of binary ``labels`` (1 = pain) under sigmoid(log_odds / T)."""
    z = np.asarray(log_odds, dtype=np.float64) / temperature
    y = np.asarray(labels, dtype=np.float64)
    # log(1 + exp(-z)) for y = 1 and log(1 + exp(z)) for y = 0, computed stably
    return float(np.mean(np.logaddexp(0.0, np.where(y > 0.5, -z, z))))


def fit_temperature(log_odds: np.ndarray, labels: np.ndarray) -> float:
    """The T in :data:`T_RANGE` with the lowest held-out NLL (golden-section search on log T; NLL is
    unimodal in it for a binary problem)."""
    y = np.asarray(labels)
    if len(y) < 10 or y.min() == y.max():
        raise ValueError(
            f"temperature scaling needs held-out images of both classes ({len(y)} given, "
            f"classes {sorted(set(y.tolist()))}): give a held-out set with pain and no-pain faces"
        )
    lo, hi = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(log_odds, y, np.exp(a)), nll(log_odds, y, np.exp(b))
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(log_odds, y, np.exp(a))
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(log_odds, y, np.exp(b))
    return float(np.exp((lo + hi) / 2))


def apply(log_odds: np.ndarray, temperature: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(log_odds, dtype=np.float64) / temperature))
