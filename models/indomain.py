"""Fit the in-domain check (:mod:`amgs.domain`) from a model's own features: statistics of the training
faces, a threshold from held-out in-domain faces.

Method (chosen by measurement, see docs/models.md and bench/bench_domain.py): class-conditional Gaussians
with one shared covariance (Lee et al. 2018), the covariance estimated as probabilistic PCA of the
within-class features: the top ``dims`` principal axes keep their own variance, every other direction gets
the mean of the remaining variance (Tipping & Bishop 1999). That is a shrinkage of the covariance towards
a scaled identity outside the faces' main subspace, and it keeps the distance off that subspace, which is
where non-face inputs land.

numpy only; the features come from :class:`amgs.runtime.Model` (the same int8 invoke that scores).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amgs.manifest import Array, DomainCheck

DEFAULT_DIMS = 32
DEFAULT_QUANTILE = 0.99


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """(shrunk covariance, shrinkage) of centred rows ``x`` (Ledoit & Wolf 2004, as scikit-learn computes it).
    Used by bench/bench_domain.py for the PCA + Ledoit-Wolf variant it compares."""
    n, p = x.shape
    s = x.T @ x / n
    mu = float(np.trace(s)) / p
    x2 = x**2
    beta = float(np.sum(x2.T @ x2 / n - s**2)) / n
    delta = float(np.sum((s - mu * np.eye(p)) ** 2))
    shrink = min(beta, delta) / delta if delta > 0 else 0.0
    return (1 - shrink) * s + shrink * mu * np.eye(p), shrink


@dataclass(frozen=True)
class MahalanobisFit:
    class_means: np.ndarray  # classes x d
    components: np.ndarray  # k x d, orthonormal
    variances: np.ndarray  # k
    residual_variance: float

    def distance(self, features: np.ndarray) -> np.ndarray:
        diff = np.asarray(features, dtype=np.float64)[:, None, :] - self.class_means[None]
        z = diff @ self.components.T
        inside = (z**2 / self.variances).sum(axis=-1)
        outside = np.maximum((diff**2).sum(axis=-1) - (z**2).sum(axis=-1), 0.0) / self.residual_variance
        return (inside + outside).min(axis=1)


def fit_mahalanobis(features: np.ndarray, labels: np.ndarray, dims: int = DEFAULT_DIMS) -> MahalanobisFit:
    """Class means and the shared probabilistic-PCA covariance of ``features`` (N x d), ``dims`` axes."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    classes = sorted(set(y.tolist()))
    if len(f) < 2 * dims or dims >= f.shape[1]:
        raise ValueError(
            f"the in-domain fit needs at least {2 * dims} images and fewer than {f.shape[1]} --dims "
            f"({len(f)} images given): give more training images or fewer --dims"
        )
    means = np.stack([f[y == c].mean(axis=0) for c in classes])
    residual = f - means[np.searchsorted(classes, y)]
    _, s, vt = np.linalg.svd(residual, full_matrices=False)
    variances = s**2 / len(f)
    rest = max(float(variances[dims:].sum()) / (f.shape[1] - dims), 1e-12)  # SVD gives min(n, d) values
    # sorted, so the kept variances are >= the remainder's mean; the floor only guards degenerate features
    return MahalanobisFit(means, vt[:dims], np.maximum(variances[:dims], rest), rest)


def fit_check(
    fit_features: np.ndarray,
    fit_labels: np.ndarray,
    heldout_features: np.ndarray,
    *,
    fitted_on: str,
    heldout: str,
    dims: int = DEFAULT_DIMS,
    quantile: float = DEFAULT_QUANTILE,
    output: str = "features_mixed5",
) -> tuple[DomainCheck, np.ndarray]:
    """The manifest's :class:`DomainCheck`, and the held-out distances its threshold came from."""
    if len(heldout_features) < 20:
        raise ValueError(
            f"the threshold needs at least 20 held-out in-domain images ({len(heldout_features)} given)"
        )
    fit = fit_mahalanobis(fit_features, fit_labels, dims)
    held = fit.distance(heldout_features)
    check = DomainCheck(
        output=output,
        class_means=Array.of(fit.class_means),
        components=Array.of(fit.components),
        variances=Array.of(fit.variances),
        residual_variance=fit.residual_variance,
        threshold=float(np.quantile(held, quantile)),
        quantile=quantile,
        fitted_on=fitted_on,
        n_fit=len(fit_features),
        heldout=heldout,
        n_heldout=len(heldout_features),
    )
    return check, held
