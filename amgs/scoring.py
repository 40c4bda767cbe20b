"""From model outputs to MGS scores, and from many scores to summaries. The score formula lives here only.

**aMGS score.** Tuttle et al. 2018 describe the automated score as integrating the class decision
and its confidence. For a two-class softmax that is exactly P(pain):

    aMGS = P(pain) = confidence            if label == "pain"
                   = 1 - confidence        if label == "no pain"

so it runs from 0 (certainly no pain) to 1 (certainly pain), with the decision threshold (0.5 by
default, per model in its manifest) in between. When a model has the five action-unit heads it also
reports ``mgs_au``: the mean of its predicted action units on the human 0-2 MGS scale (Langford 2010:
an image's MGS is the mean of its action units).

**Review flag.** Images whose top-class confidence is below the model's ``review_threshold`` (0.65 in
the original aMGS code) get ``needs_review = True``: they are kept and counted, but a person should look.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amgs.contract import AU_KEYS, LABELS
from amgs.manifest import ManifestError
from amgs.preprocess import Box, ImageSource, prepare
from amgs.runtime import Model


@dataclass(frozen=True)
class ImageScore:
    p_pain: float
    label: str
    confidence: float
    amgs: float
    needs_review: bool
    au: dict[str, float] | None = None
    mgs_au: float | None = None
    inference_ms: float = 0.0


def amgs_score(p_pain: float) -> float:
    """The aMGS score on 0-1 (see module docstring): P(pain), clipped against rounding."""
    return float(min(1.0, max(0.0, p_pain)))


def score_from_outputs(
    probs: np.ndarray, threshold: float, review_threshold: float, au: np.ndarray | None = None
) -> ImageScore:
    """Turn the softmax (order ``LABELS``) and optional AU vector into an :class:`ImageScore`."""
    probs = np.asarray(probs, dtype=np.float64)
    total = float(probs.sum())
    p_pain = float(probs[1] / total) if total > 0 else 0.5  # renormalize int8 rounding
    label = LABELS[1] if p_pain >= threshold else LABELS[0]
    confidence = max(p_pain, 1.0 - p_pain)
    au_map = None
    mgs_au = None
    if au is not None:
        values = np.clip(np.asarray(au, dtype=np.float64), 0.0, 2.0)
        au_map = {k: round(float(v), 4) for k, v in zip(AU_KEYS, values, strict=True)}
        mgs_au = round(float(values.mean()), 4)
    return ImageScore(
        p_pain=round(p_pain, 6),
        label=label,
        confidence=round(confidence, 6),
        amgs=round(amgs_score(p_pain), 6),
        needs_review=confidence < review_threshold,
        au=au_map,
        mgs_au=mgs_au,
    )


class Scorer:
    """A model plus the one preprocessing path: image in, :class:`ImageScore` out."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.manifest = model.manifest
        if self.manifest.kind != "scorer":
            raise ManifestError(f"{model.path.name} is a face {self.manifest.kind}, not a scoring model")
        self._pain = self.manifest.pain_output.name
        au = self.manifest.au_output
        self._au = au.name if au else None

    def score_input(self, x: np.ndarray) -> ImageScore:
        out = self.model.run(x)
        s = score_from_outputs(
            out[self._pain],
            self.manifest.threshold,
            self.manifest.review_threshold,
            out[self._au] if self._au else None,
        )
        return _with_ms(s, self.model.last_invoke_ms)

    def score(self, source: ImageSource, box: Box | None = None) -> ImageScore:
        return self.score_input(prepare(source, self.manifest.input, box))


def _with_ms(s: ImageScore, ms: float) -> ImageScore:
    return ImageScore(**{**s.__dict__, "inference_ms": round(ms, 3)})


# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Summary:
    n: int
    mean_amgs: float | None
    sem_amgs: float | None
    fraction_pain: float | None
    n_review: int


def summarize(scores: Iterable[ImageScore]) -> Summary:
    """n, mean aMGS with its standard error, fraction classified pain, and how many need review."""
    items = list(scores)
    n = len(items)
    if n == 0:
        return Summary(0, None, None, None, 0)
    values = np.array([s.amgs for s in items], dtype=np.float64)
    sem = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else None
    return Summary(
        n=n,
        mean_amgs=float(values.mean()),
        sem_amgs=sem,
        fraction_pain=sum(s.label == LABELS[1] for s in items) / n,
        n_review=sum(s.needs_review for s in items),
    )


def summarize_by_folder(scored: Iterable[tuple[Path, ImageScore]]) -> dict[str, Summary]:
    groups: dict[str, list[ImageScore]] = {}
    for path, s in scored:
        groups.setdefault(str(path.parent), []).append(s)
    return {k: summarize(v) for k, v in sorted(groups.items())}
