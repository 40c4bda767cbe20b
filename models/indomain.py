"""Fit the in-domain check (:mod:`amgs.domain`) from a model's own features: statistics of the training
faces, a threshold from held-out in-domain faces.

Method (chosen by measurement, see docs/models.md): class-conditional Gaussians with one shared covariance
(Lee et al. 2018) on the top ``dims`` principal components of the pooled features; the covariance is shrunk
towards a scaled identity by the Ledoit-Wolf formula, so it stays well conditioned with a few hundred
images. The projection stored in the manifest is PCA followed by whitening (C^-1/2), so at run time the
score is the squared Euclidean distance to the nearest whitened class mean.

numpy only; the features come from :class:`amgs.runtime.Model` (the same int8 invoke that scores).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amgs.manifest import Array, DomainCheck

DEFAULT_DIMS = 32
DEFAULT_QUANTILE = 0.99


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """(shrunk covariance, shrinkage) of centred rows ``x`` (Ledoit & Wolf 2004, as scikit-learn computes it)."""
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
    center: np.ndarray  # d
    projection: np.ndarray  # k x d: PCA then whitening
    class_means: np.ndarray  # classes x k, whitened
    shrinkage: float

    def distance(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, dtype=np.float64) - self.center) @ self.projection.T
        return ((z[:, None, :] - self.class_means[None]) ** 2).sum(axis=-1).min(axis=1)


def fit_mahalanobis(features: np.ndarray, labels: np.ndarray, dims: int = DEFAULT_DIMS) -> MahalanobisFit:
    """Shared-covariance class Gaussians on the top ``dims`` principal components of ``features`` (N x d)."""
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    classes = sorted(set(y.tolist()))
    if len(f) < 2 * dims or len(classes) < 1:
        raise ValueError(
            f"the in-domain fit needs at least {2 * dims} images ({len(f)} given): "
            "give more training images or fewer --dims"
        )
    center = f.mean(axis=0)
    _, _, vt = np.linalg.svd(f - center, full_matrices=False)
    pca = vt[:dims]
    z = (f - center) @ pca.T
    means = np.stack([z[y == c].mean(axis=0) for c in classes])
    residual = z - means[np.searchsorted(classes, y)]
    cov, shrink = ledoit_wolf(residual)
    w, e = np.linalg.eigh(cov)
    whiten = (e / np.sqrt(np.maximum(w, 1e-12))) @ e.T  # C^-1/2, symmetric
    return MahalanobisFit(center, whiten @ pca, means @ whiten.T, shrink)


def fit_check(
    fit_features: np.ndarray,
    fit_labels: np.ndarray,
    heldout_features: np.ndarray,
    *,
    fitted_on: str,
    heldout: str,
    dims: int = DEFAULT_DIMS,
    quantile: float = DEFAULT_QUANTILE,
    output: str = "features",
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
        center=Array.of(fit.center),
        projection=Array.of(fit.projection),
        class_means=Array.of(fit.class_means),
        threshold=float(np.quantile(held, quantile)),
        quantile=quantile,
        fitted_on=fitted_on,
        n_fit=len(fit_features),
        heldout=heldout,
        n_heldout=len(heldout_features),
        shrinkage=round(fit.shrinkage, 6),
    )
    return check, held
