"""The in-domain check at run time: is this image like the faces the model was trained and validated on?

A softmax confidence says how sure the model is between pain and no pain, not whether the input is a
face it knows: the synthetic-trained model called a flat grey square "pain" at 0.996. This check reads the
model's own features (an extra output of the same int8 invoke: the channel means of a mid-level block)
and measures how far they lie from the training faces: the squared Mahalanobis distance to the nearest
class mean under one shared covariance (Lee et al. 2018), estimated as probabilistic PCA (see
:class:`amgs.manifest.DomainCheck`). Above the manifest's threshold (a high quantile of held-out
in-domain faces) the image is ``unscorable`` / ``out_of_domain``.

The statistics are fitted by ``amgs model calibrate`` / ``quantize`` (:mod:`amgs.models.indomain`); this
module only applies them: one small matrix-vector product per image, numpy only (no TensorFlow).
"""

from __future__ import annotations

import numpy as np

from amgs.manifest import DomainCheck


class DomainScorer:
    """Applies a manifest's :class:`~amgs.manifest.DomainCheck` to feature vectors."""

    def __init__(self, check: DomainCheck) -> None:
        self.check = check
        self.threshold = float(check.threshold)
        self._means = check.class_means.to_numpy()
        self._axes = check.components.to_numpy()
        self._inv_var = 1.0 / check.variances.to_numpy()
        self._inv_res = np.float32(1.0 / check.residual_variance)

    def distance(self, features: np.ndarray) -> np.ndarray | float:
        """Squared Mahalanobis distance to the nearest class (one vector -> float, N x d -> N)."""
        f = np.asarray(features, dtype=np.float32)
        diff = f[..., None, :] - self._means  # (..., classes, d)
        z = diff @ self._axes.T  # (..., classes, k)
        inside = (z * z * self._inv_var).sum(axis=-1)
        outside = (diff * diff).sum(axis=-1) - (z * z).sum(axis=-1)
        d = (inside + np.maximum(outside, 0.0) * self._inv_res).min(axis=-1)
        return float(d) if d.ndim == 0 else d

    def in_domain(self, distance: float) -> bool:
        return distance <= self.threshold
