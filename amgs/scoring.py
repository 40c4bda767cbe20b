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

**Outcome.** Every image ends in exactly one of ``OUTCOMES``: ``"pain"``, ``"no pain"`` or ``"unscorable"``.
An unscorable image carries one of ``UNSCORABLE_REASONS``:

- ``out_of_domain``: the model's own features say the image is unlike the faces it was trained and validated
  on (the manifest's in-domain check, :mod:`amgs.domain`); its P(pain) means nothing.
- ``no_face``: no usable face was found in the frame (a face detector or region found none).
- ``quality``: the frame cannot be judged (flat, blank, blown out or black; see :func:`pixel_quality`).

Unscorable images keep their raw ``p_pain``/``label`` for the record, but are excluded from every mean,
fraction pain and review count (:func:`summarize`). A model without an in-domain check (older manifests)
never returns ``out_of_domain``; its ``domain_distance`` is None.

**Calibration.** When the manifest carries a temperature (:class:`amgs.manifest.Calibration`), ``p_pain`` is
calibrated: sigmoid(pain log-odds / T), the log-odds read from the model's logits output. The 0.5 decision
is unchanged by it; confidence and ``needs_review`` follow the calibrated value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from amgs.contract import AU_KEYS, LABELS, OUTCOMES, UNSCORABLE_REASONS
from amgs.domain import DomainScorer
from amgs.manifest import Calibration, ManifestError
from amgs.preprocess import Box, ImageSource, load_pixels, to_model_input
from amgs.runtime import Model

NO_PAIN, PAIN, UNSCORABLE = OUTCOMES  # the wire contract's vocabulary (amgs.contract), named here
OUT_OF_DOMAIN, NO_FACE, QUALITY = UNSCORABLE_REASONS

# Quality gate on the model's input pixels: a frame whose grey levels hardly vary, or that is mostly
# clipped to black or white, shows nothing to judge, whatever the model says.
MIN_PIXEL_STD = 4.0
MAX_CLIPPED_FRACTION = 0.5


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
    outcome: str = ""  # one of OUTCOMES; "" is filled in from label by __post_init__
    unscorable_reason: str | None = None  # one of UNSCORABLE_REASONS when outcome == UNSCORABLE
    domain_distance: float | None = None  # in-domain check score; None when the model has no check

    def __post_init__(self) -> None:
        if not self.outcome:
            object.__setattr__(self, "outcome", UNSCORABLE if self.unscorable_reason else self.label)
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r} is not one of {OUTCOMES}")
        if (self.outcome == UNSCORABLE) != (self.unscorable_reason is not None):
            raise ValueError("an unscorable image needs a reason, and only an unscorable one may have it")
        if self.unscorable_reason is not None and self.unscorable_reason not in UNSCORABLE_REASONS:
            raise ValueError(
                f"unscorable reason {self.unscorable_reason!r} is not one of {UNSCORABLE_REASONS}"
            )

    @property
    def scorable(self) -> bool:
        return self.outcome != UNSCORABLE

    def outcome_fields(self) -> dict[str, str]:
        """``outcome``, and ``unscorable_reason`` when there is one: as score records carry them."""
        return {
            "outcome": self.outcome,
            **({"unscorable_reason": self.unscorable_reason} if not self.scorable else {}),
        }


def mark_unscorable(score: ImageScore, reason: str) -> ImageScore:
    """The same score, outcome ``unscorable`` for ``reason`` (one of UNSCORABLE_REASONS)."""
    return replace(score, outcome=UNSCORABLE, unscorable_reason=reason)


def pixel_quality(pixels: np.ndarray) -> str | None:
    """``QUALITY`` when the uint8 RGB pixels are nearly flat or mostly clipped, else None.

    Reads every 4th row and column: enough for whole-frame statistics at a 16th of the cost."""
    px = np.asarray(pixels)[::4, ::4]
    if float(px.std()) < MIN_PIXEL_STD:
        return QUALITY
    clipped = np.mean((px.max(axis=-1) >= 254) | (px.max(axis=-1) <= 1))
    return QUALITY if clipped > MAX_CLIPPED_FRACTION else None


def pain_log_odds(probs: np.ndarray) -> float:
    """log(P(pain) / P(no pain)) of an int8 softmax, clipped to half a quantization step from 0 and 1."""
    p = np.asarray(probs, dtype=np.float64)
    total = float(p.sum())
    p1 = float(p[1] / total) if total > 0 else 0.5
    eps = 1.0 / 512
    p1 = min(max(p1, eps), 1 - eps)
    return math.log(p1 / (1 - p1))


def calibrated_p_pain(calibration: Calibration, probs: np.ndarray, logits: np.ndarray | None = None) -> float:
    """Temperature-scaled P(pain) (see module docstring)."""
    if calibration.source == "logits":
        if logits is None:
            raise ValueError("this calibration reads the model's logits output, which was not given")
        odds = float(logits[1] - logits[0])
    else:
        odds = pain_log_odds(probs)
    return 1.0 / (1.0 + math.exp(-odds / calibration.temperature))


def amgs_score(p_pain: float) -> float:
    """The aMGS score on 0-1 (see module docstring): P(pain), clipped against rounding."""
    return float(min(1.0, max(0.0, p_pain)))


def score_from_outputs(
    probs: np.ndarray,
    threshold: float,
    review_threshold: float,
    au: np.ndarray | None = None,
    p_pain: float | None = None,
) -> ImageScore:
    """Turn the softmax (order ``LABELS``) and optional AU vector into an :class:`ImageScore`
    (``p_pain``: an already calibrated P(pain) that replaces the softmax's)."""
    if p_pain is None:
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
    """A model plus the one preprocessing path: image in, :class:`ImageScore` out.

    With a manifest that has an in-domain check, every score carries ``domain_distance`` and images beyond
    the threshold are ``unscorable`` / ``out_of_domain``; with a calibration, ``p_pain`` is calibrated.
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        self.manifest = model.manifest
        if self.manifest.kind != "scorer":
            raise ManifestError(f"{model.path.name} is a face {self.manifest.kind}, not a scoring model")
        self._pain = self.manifest.pain_output.name
        au = self.manifest.au_output
        self._au = au.name if au else None
        logits = self.manifest.output_of_kind("logits")
        self._logits = logits.name if logits else None
        check = self.manifest.domain_check
        self.domain = DomainScorer(check) if check else None
        self.calibration = self.manifest.calibration
        self.last_raw_p_pain = 0.5  # the uncalibrated softmax P(pain) of the last image (for evaluation)

    def score_input(self, x: np.ndarray) -> ImageScore:
        """Score one model input; no quality gate (the pixels are not at hand: see :meth:`score_pixels`)."""
        out = self.model.run(x)
        self.last_raw_p_pain = score_from_outputs(out[self._pain], 0.5, 0.5).p_pain
        p_pain = None
        if self.calibration is not None:
            p_pain = calibrated_p_pain(
                self.calibration, out[self._pain], out[self._logits] if self._logits else None
            )
        s = score_from_outputs(
            out[self._pain],
            self.manifest.threshold,
            self.manifest.review_threshold,
            out[self._au] if self._au else None,
            p_pain=p_pain,
        )
        distance = None
        if self.domain is not None:
            distance = self.domain.distance(out[self.domain.check.output])
            if not self.domain.in_domain(distance):
                s = mark_unscorable(s, OUT_OF_DOMAIN)
        return replace(
            s,
            inference_ms=round(self.model.last_invoke_ms, 3),
            domain_distance=None if distance is None else round(distance, 3),
        )

    def score_pixels(self, pixels: np.ndarray) -> ImageScore:
        """Score uint8 RGB pixels already at the model's size: model and in-domain check, then the quality
        gate, whose reason wins (a flat or clipped frame says more about the camera than about the model)."""
        s = self.score_input(to_model_input(pixels, self.manifest.input))
        reason = pixel_quality(pixels)
        return mark_unscorable(s, reason) if reason else s

    def score(self, source: ImageSource, box: Box | None = None) -> ImageScore:
        spec = self.manifest.input
        return self.score_pixels(load_pixels(source, (spec.width, spec.height), box).pixels)


# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True)
class Summary:
    n: int  # scorable images: every figure below is over these
    mean_amgs: float | None
    sem_amgs: float | None
    fraction_pain: float | None
    n_review: int
    n_unscorable: int = 0
    unscorable_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def n_total(self) -> int:
        return self.n + self.n_unscorable


def summarize(scores: Iterable[ImageScore]) -> Summary:
    """Over scorable images: n, mean aMGS with its standard error, fraction pain, how many need review;
    beside them, how many were unscorable and why (never part of a mean or a fraction)."""
    everything = list(scores)
    items = [s for s in everything if s.scorable]
    reasons: dict[str, int] = {}
    for s in everything:
        if not s.scorable:
            reasons[s.unscorable_reason or ""] = reasons.get(s.unscorable_reason or "", 0) + 1
    n = len(items)
    n_unscorable = len(everything) - n
    if n == 0:
        return Summary(0, None, None, None, 0, n_unscorable, reasons)
    values = np.array([s.amgs for s in items], dtype=np.float64)
    sem = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else None
    return Summary(
        n=n,
        mean_amgs=float(values.mean()),
        sem_amgs=sem,
        fraction_pain=sum(s.outcome == PAIN for s in items) / n,
        n_review=sum(s.needs_review for s in items),
        n_unscorable=n_unscorable,
        unscorable_by_reason=reasons,
    )


def summarize_by_folder(scored: Iterable[tuple[Path, ImageScore]]) -> dict[str, Summary]:
    groups: dict[str, list[ImageScore]] = {}
    for path, s in scored:
        groups.setdefault(str(path.parent), []).append(s)
    return {k: summarize(v) for k, v in sorted(groups.items())}
