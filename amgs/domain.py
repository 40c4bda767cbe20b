"""The in-domain check at run time: is this image like the faces the model was trained and validated on?

A softmax confidence says how sure the model is between pain and no pain, not whether the input is a
face it knows: the synthetic-trained model called a flat grey square "pain" at 0.996. This check reads the
model's own pooled penultimate features (an extra output of the same int8 invoke) and measures how far
they lie from the training faces: the squared Mahalanobis distance to the nearest class mean, with one
shared shrunk covariance on a PCA-reduced space (Lee et al. 2018). Above the manifest's threshold (a
high quantile of held-out in-domain faces) the image is ``unscorable`` / ``out_of_domain``.

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
        self._center = check.center.to_numpy()
        self._projection = check.projection.to_numpy()
        self._means = check.class_means.to_numpy()

    def distance(self, features: np.ndarray) -> np.ndarray | float:
        """Squared Mahalanobis distance to the nearest class (one vector -> float, N x d -> N)."""
        f = np.asarray(features, dtype=np.float32)
        z = (f - self._center) @ self._projection.T
        d = ((z[..., None, :] - self._means) ** 2).sum(axis=-1).min(axis=-1)
        return float(d) if d.ndim == 0 else d

    def in_domain(self, distance: float) -> bool:
        return distance <= self.threshold
