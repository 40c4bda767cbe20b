"""Agreement statistics for human vs model MGS, in plain numpy (the collector installs no scipy).

Every function returns plain floats in dicts ready for JSON, with the number of observations behind
them, and ``None`` where a figure cannot be computed (too few items, no variance). Confidence intervals
are two-sided at ``conf`` (0.95 by default).

- :func:`pearson`         r with the Fisher-z interval
- :func:`icc`             ICC(1,1), ICC(2,1) = ICC(A,1) (absolute agreement, two-way random) and
                          ICC(3,1) = ICC(C,1) (consistency, two-way mixed), with the F-based intervals of
                          Shrout & Fleiss (1979) and McGraw & Wong (1996)
- :func:`bland_altman`    bias, 95 % limits of agreement and the intervals of both (Bland & Altman 1986/1999)
- :func:`cohen_kappa`     Cohen's kappa, unweighted or linear/quadratic weighted, with the large-sample
                          standard error of Fleiss, Cohen & Everitt (1969); interval cut to [-1, 1]
- :func:`proportion`      a proportion (accuracy, sensitivity, specificity) with the Wilson interval

The F, t and beta distributions are computed here (regularized incomplete beta by continued fraction,
quantiles by bisection); the normal quantile is the standard library's. The tests check every figure
against published values and against pingouin/statsmodels/scipy output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

import numpy as np

# ---------------------------------------------------------------- distributions


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(lbeta + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def _beta_ppf(p: float, a: float, b: float) -> float:
    """Inverse of :func:`betainc` in x: Newton steps on the bracketing interval, bisection whenever a
    step would leave it (a few iterations instead of ~50 bisections; each costs a continued fraction)."""
    lo, hi = 0.0, 1.0
    x = a / (a + b)
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    for _ in range(200):
        f = betainc(a, b, x) - p
        if f < 0:
            lo = x
        else:
            hi = x
        if f == 0 or hi - lo < 1e-15 * max(1.0, hi):
            return x
        pdf = math.exp(lbeta + (a - 1) * math.log(x) + (b - 1) * math.log1p(-x)) if 0 < x < 1 else 0.0
        step = x - f / pdf if pdf > 0 else -1.0
        if not lo < step < hi:
            step = (lo + hi) / 2
        if abs(step - x) < 1e-15 * max(abs(x), 1e-300):
            return step
        x = step
    return x


def f_cdf(x: float, df1: float, df2: float) -> float:
    if x <= 0:
        return 0.0
    return betainc(df1 / 2, df2 / 2, df1 * x / (df1 * x + df2))


def f_ppf(p: float, df1: float, df2: float) -> float:
    """Quantile of the F distribution (df may be fractional, e.g. Satterthwaite's)."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    y = _beta_ppf(p, df1 / 2, df2 / 2)
    return df2 * y / (df1 * (1.0 - y)) if y < 1.0 else math.inf


def t_ppf(p: float, df: float) -> float:
    """Quantile of Student's t."""
    if p == 0.5:
        return 0.0
    q = 2 * abs(p - 0.5)  # P(|T| <= t) = q  <=>  T^2 ~ F(1, df) at q
    t = math.sqrt(f_ppf(q, 1.0, df))
    return t if p > 0.5 else -t


def z_ppf(p: float) -> float:
    return NormalDist().inv_cdf(p)


# ---------------------------------------------------------------- helpers


def _f(x: float | None, digits: int = 6) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


def _pairs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if a.shape != b.shape:
        raise ValueError("x and y must have the same length")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


# ---------------------------------------------------------------- Pearson


def pearson(x: Sequence[float], y: Sequence[float], conf: float = 0.95) -> dict:
    """Pearson r; interval by Fisher's z = atanh(r) +/- z_(1-a/2) / sqrt(n - 3) (needs n >= 4)."""
    a, b = _pairs(x, y)
    n = len(a)
    out: dict = {"r": None, "ci_low": None, "ci_high": None, "n": n}
    if n < 3 or np.std(a) == 0 or np.std(b) == 0:
        return out
    r = float(np.corrcoef(a, b)[0, 1])
    r = max(-1.0, min(1.0, r))
    out["r"] = _f(r)
    if n >= 4 and abs(r) < 1:
        z = math.atanh(r)
        half = z_ppf(0.5 + conf / 2) / math.sqrt(n - 3)
        out["ci_low"], out["ci_high"] = _f(math.tanh(z - half)), _f(math.tanh(z + half))
    return out


# ---------------------------------------------------------------- ICC

ICC_KINDS = ("ICC1", "ICC2", "ICC3")
"""ICC(1,1) one-way random; ICC(2,1) = ICC(A,1) two-way random, absolute agreement; ICC(3,1) = ICC(C,1)
two-way mixed, consistency (Shrout & Fleiss 1979; McGraw & Wong 1996)."""


def anova_two_way(matrix: np.ndarray) -> dict:
    """Mean squares of an n targets x k raters table without missing cells."""
    m = np.asarray(matrix, dtype=float)
    n, k = m.shape
    grand = m.mean()
    ss_total = ((m - grand) ** 2).sum()
    ss_rows = k * ((m.mean(axis=1) - grand) ** 2).sum()
    ss_cols = n * ((m.mean(axis=0) - grand) ** 2).sum()
    ss_err = ss_total - ss_rows - ss_cols
    return {
        "n": n,
        "k": k,
        "msr": ss_rows / (n - 1),
        "msc": ss_cols / (k - 1),
        "mse": ss_err / ((n - 1) * (k - 1)),
        "msw": (ss_cols + ss_err) / (n * (k - 1)),
    }


def icc(matrix: Sequence[Sequence[float]], kind: str = "ICC2", conf: float = 0.95) -> dict:
    """Single-measure intraclass correlation of a complete n targets x k raters (or occasions) table.

    Rows with a missing value are dropped. ``kind``: ``ICC1``, ``ICC2`` (= ICC(A,1), absolute
    agreement: a rater or the model that scores everything higher is penalised) or ``ICC3`` (= ICC(C,1),
    consistency). Intervals: the exact F intervals for ICC1/ICC3, the approximate one (Satterthwaite
    degrees of freedom) of McGraw & Wong 1996 for ICC2, as in pingouin and R's ``psych::ICC``.
    """
    if kind not in ICC_KINDS:
        raise ValueError(f"kind must be one of {ICC_KINDS}")
    m = np.asarray(matrix, dtype=float)
    if m.size == 0:
        m = m.reshape(0, 2)
    if m.ndim != 2:
        raise ValueError("matrix must be 2-D: targets x raters")
    m = m[np.isfinite(m).all(axis=1)]
    n, k = m.shape
    out: dict = {"kind": kind, "icc": None, "ci_low": None, "ci_high": None, "n": int(n), "k": int(k)}
    if n < 2 or k < 2:
        return out
    a = anova_two_way(m)
    msr, msc, mse, msw = a["msr"], a["msc"], a["mse"], a["msw"]
    alpha = 1 - conf
    hi_q = 1 - alpha / 2
    if kind == "ICC1":
        den = msr + (k - 1) * msw
        if den <= 0 or msw == 0:
            return out
        value = (msr - msw) / den
        f0, df1, df2 = msr / msw, n - 1, n * (k - 1)
    elif kind == "ICC3":
        den = msr + (k - 1) * mse
        if den <= 0 or mse == 0:
            return out
        value = (msr - mse) / den
        f0, df1, df2 = msr / mse, n - 1, (n - 1) * (k - 1)
    else:
        den = msr + (k - 1) * mse + k * (msc - mse) / n
        if den <= 0:
            return out
        value = (msr - mse) / den
    out["icc"] = _f(value)
    if kind in ("ICC1", "ICC3"):
        fl = f0 / f_ppf(hi_q, df1, df2)
        fu = f0 * f_ppf(hi_q, df2, df1)
        out["ci_low"] = _f((fl - 1) / (fl + k - 1))
        out["ci_high"] = _f((fu - 1) / (fu + k - 1))
        out["F"], out["df1"], out["df2"] = _f(f0), df1, df2
        return out
    if mse == 0 or value >= 1:
        return out
    aa = k * value / (n * (1 - value))
    bb = 1 + k * value * (n - 1) / (n * (1 - value))
    v_num = (aa * msc + bb * mse) ** 2
    v_den = (aa * msc) ** 2 / (k - 1) + (bb * mse) ** 2 / ((n - 1) * (k - 1))
    v = v_num / v_den if v_den > 0 else math.inf
    if not math.isfinite(v) or v <= 0:
        return out
    fs = f_ppf(hi_q, n - 1, v)
    fstar = f_ppf(hi_q, v, n - 1)
    low = n * (msr - fs * mse) / (fs * (k * msc + (k * n - k - n) * mse) + n * msr)
    high = n * (fstar * msr - mse) / (k * msc + (k * n - k - n) * mse + n * fstar * msr)
    out["ci_low"], out["ci_high"] = _f(low), _f(high)
    out["F"], out["df1"], out["df2"] = _f(msr / mse), n - 1, _f(v, 3)
    return out


# ---------------------------------------------------------------- Bland-Altman


def bland_altman(a: Sequence[float], b: Sequence[float], conf: float = 0.95) -> dict:
    """Differences ``a - b``: bias (mean difference), SD, 95 % limits of agreement (bias +/- 1.96 SD),
    with t intervals of the bias (SE = SD / sqrt(n)) and of each limit (SE = SD * sqrt(3 / n),
    Bland & Altman 1986)."""
    x, y = _pairs(a, b)
    n = len(x)
    out: dict = {
        "bias": None,
        "sd": None,
        "loa_low": None,
        "loa_high": None,
        "bias_ci_low": None,
        "bias_ci_high": None,
        "loa_low_ci_low": None,
        "loa_low_ci_high": None,
        "loa_high_ci_low": None,
        "loa_high_ci_high": None,
        "n": n,
    }
    if n < 2:
        return out
    d = x - y
    bias = float(d.mean())
    sd = float(d.std(ddof=1))
    z = z_ppf(0.975)  # the limits are 95 % limits by definition
    lo, hi = bias - z * sd, bias + z * sd
    t = t_ppf(0.5 + conf / 2, n - 1)
    se_bias = sd / math.sqrt(n)
    se_loa = sd * math.sqrt(3.0 / n)
    out.update(
        bias=_f(bias),
        sd=_f(sd),
        loa_low=_f(lo),
        loa_high=_f(hi),
        bias_ci_low=_f(bias - t * se_bias),
        bias_ci_high=_f(bias + t * se_bias),
        loa_low_ci_low=_f(lo - t * se_loa),
        loa_low_ci_high=_f(lo + t * se_loa),
        loa_high_ci_low=_f(hi - t * se_loa),
        loa_high_ci_high=_f(hi + t * se_loa),
    )
    return out


# ---------------------------------------------------------------- kappa


def kappa_weights(k: int, weights: str | None) -> np.ndarray:
    """Agreement weights: 1 on the diagonal; ``linear`` 1 - |i-j|/(k-1), ``quadratic`` 1 - ((i-j)/(k-1))^2."""
    i, j = np.indices((k, k))
    if weights is None:
        return (i == j).astype(float)
    if k < 2:
        return np.ones((k, k))
    if weights == "linear":
        return 1 - np.abs(i - j) / (k - 1)
    if weights == "quadratic":
        return 1 - ((i - j) / (k - 1)) ** 2
    raise ValueError("weights must be None, 'linear' or 'quadratic'")


def cohen_kappa(
    a: Sequence,
    b: Sequence,
    categories: Sequence | None = None,
    weights: str | None = None,
    conf: float = 0.95,
) -> dict:
    """Cohen's kappa between two ratings of the same items (None entries dropped pairwise).

    Standard error: the large-sample (non-null) variance of Fleiss, Cohen & Everitt (1969); the interval
    is kappa +/- z * SE. ``categories`` fixes the order (needed for weighted kappa); default: sorted values.
    """
    pairs = [(u, v) for u, v in zip(a, b, strict=True) if u is not None and v is not None]
    n = len(pairs)
    cats = list(categories) if categories is not None else sorted({u for p in pairs for u in p})
    out: dict = {
        "kappa": None,
        "se": None,
        "ci_low": None,
        "ci_high": None,
        "p_observed": None,
        "p_expected": None,
        "weights": weights,
        "n": n,
    }
    if n == 0 or not cats:
        return out
    index = {c: i for i, c in enumerate(cats)}
    k = len(cats)
    table = np.zeros((k, k))
    for u, v in pairs:
        table[index[u], index[v]] += 1
    return {**out, **kappa_from_table(table, weights, conf)}


def kappa_from_table(
    table: Sequence[Sequence[float]], weights: str | None = None, conf: float = 0.95
) -> dict:
    """Cohen's kappa from a k x k table of counts (rows: rater A, columns: rater B)."""
    t = np.asarray(table, dtype=float)
    n = t.sum()
    k = t.shape[0]
    out: dict = {"kappa": None, "se": None, "ci_low": None, "ci_high": None, "n": int(n)}
    if n == 0:
        return out
    p = t / n
    w = kappa_weights(k, weights)
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    po = float((w * p).sum())
    pe = float((w * np.outer(rows, cols)).sum())
    out["p_observed"], out["p_expected"] = _f(po), _f(pe)
    if pe >= 1:
        return out
    kappa = (po - pe) / (1 - pe)
    wi = w @ cols  # w-bar_i. = sum_j p_.j w_ij
    wj = rows @ w  # w-bar_.j = sum_i p_i. w_ij
    var = (
        (p * (w - (wi[:, None] + wj[None, :]) * (1 - kappa)) ** 2).sum() - (kappa - pe * (1 - kappa)) ** 2
    ) / (n * (1 - pe) ** 2)
    se = math.sqrt(max(var, 0.0))
    z = z_ppf(0.5 + conf / 2)
    # the normal-approximation interval is cut to kappa's range [-1, 1]
    out.update(
        kappa=_f(kappa), se=_f(se), ci_low=_f(max(-1.0, kappa - z * se)), ci_high=_f(min(1.0, kappa + z * se))
    )
    return out


# ---------------------------------------------------------------- proportions


def proportion(successes: int, n: int, conf: float = 0.95) -> dict:
    """A proportion with the Wilson score interval (sensible near 0 and 1 and for small n)."""
    out: dict = {"value": None, "ci_low": None, "ci_high": None, "successes": int(successes), "n": int(n)}
    if n <= 0:
        return out
    z = z_ppf(0.5 + conf / 2)
    phat = successes / n
    den = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / den
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / den
    out.update(value=_f(phat), ci_low=_f(max(0.0, centre - half)), ci_high=_f(min(1.0, centre + half)))
    return out


def binary_agreement(model_pain: Sequence[bool], human_pain: Sequence[bool], conf: float = 0.95) -> dict:
    """Pain / no-pain calls of the model vs the human consensus: accuracy, sensitivity, specificity
    (human = reference) and Cohen's kappa, each with its interval and count."""
    pairs = [(bool(m), bool(h)) for m, h in zip(model_pain, human_pain, strict=True)]
    n = len(pairs)
    tp = sum(1 for m, h in pairs if m and h)
    tn = sum(1 for m, h in pairs if not m and not h)
    fp = sum(1 for m, h in pairs if m and not h)
    fn = sum(1 for m, h in pairs if not m and h)
    return {
        "n": n,
        "table": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "accuracy": proportion(tp + tn, n, conf),
        "sensitivity": proportion(tp, tp + fn, conf),
        "specificity": proportion(tn, tn + fp, conf),
        "kappa": kappa_from_table([[tp, fp], [fn, tn]], None, conf) if n else {"kappa": None, "n": 0},
    }
