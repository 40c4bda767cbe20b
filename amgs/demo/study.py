"""The demo's SYNTHETIC study: who is in it, how their grimace evolves, and a bank of scored faces.

Groups (as in Tuttle et al. 2018): laparotomy, sham, laparotomy + analgesic, plus one laparotomy
animal with a complication whose grimace does not come down (it is the cage that triggers the alert).
Each animal's grimace level (mean action unit, 0-2) follows its group's curve against hours since
surgery; nothing here is a real mouse.

Score source: faces are rendered with ``amgs.synth.faces`` at grimace levels 0..2 and scored once by
the real :class:`~amgs.scoring.Scorer`; a simulated image at time t takes a face of the animal's level
and that face's real score. When the model in use does not respond to the grimace level (a model
swapped in that was not trained for it), ``score_source="auto"`` falls back to scores drawn from the study
curve itself and says so loudly; those records name the model ``demo-study-curve``, never the real one.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass

import numpy as np

from amgs.contract import AU_KEYS, LABELS

LEVELS = np.round(np.arange(0.0, 2.01, 0.25), 2)
CURVE_MODEL = {
    "name": "demo-study-curve",
    "version": "1",
    "sha256": hashlib.sha256(
        b"amgs demo study curve v1: scores drawn from the synthetic study curve"
    ).hexdigest(),
    "synthetic": True,
}


@dataclass(frozen=True)
class GroupCurve:
    """Grimace level = baseline + amplitude * (1 - exp(-h / rise_h)) * exp(-h / decay_h), h >= 0."""

    group_id: str
    name: str
    amplitude: float
    rise_h: float
    decay_h: float

    def level(self, hours: float, baseline: float) -> float:
        if hours < 0:
            return baseline
        return baseline + self.amplitude * (1 - math.exp(-hours / self.rise_h)) * math.exp(
            -hours / self.decay_h
        )


CURVES = {
    "laparotomy": GroupCurve("laparotomy", "Laparotomy", 1.55, 1.5, 16.0),
    "sham": GroupCurve("sham", "Sham (anaesthesia only)", 0.35, 1.0, 5.0),
    "analgesic": GroupCurve("analgesic", "Laparotomy + analgesic", 0.55, 1.5, 10.0),
}
COMPLICATION = GroupCurve("laparotomy", "Laparotomy (complication)", 1.6, 2.0, 400.0)


@dataclass(frozen=True)
class DemoAnimal:
    animal_id: str
    cage_id: str
    group_id: str
    device_id: str
    room_id: str
    coat: str
    baseline: float
    curve: GroupCurve


def study_animals() -> list[DemoAnimal]:
    """Seven single-housed animals on four devices in two rooms (device-a watches two cages)."""
    spec = [
        ("M01", "C01", "laparotomy", "dev-a", "room-1", "white", 0.30, CURVES["laparotomy"]),
        ("M02", "C02", "laparotomy", "dev-a", "room-1", "agouti", 0.25, CURVES["laparotomy"]),
        ("M03", "C03", "laparotomy", "dev-d", "room-2", "black", 0.30, COMPLICATION),
        ("M04", "C04", "sham", "dev-b", "room-1", "white", 0.28, CURVES["sham"]),
        ("M05", "C05", "sham", "dev-b", "room-1", "black", 0.32, CURVES["sham"]),
        ("M06", "C06", "analgesic", "dev-c", "room-2", "agouti", 0.30, CURVES["analgesic"]),
        ("M07", "C07", "analgesic", "dev-c", "room-2", "white", 0.27, CURVES["analgesic"]),
    ]
    return [DemoAnimal(*s) for s in spec]


@dataclass(frozen=True)
class BankFace:
    level: float
    coat: str
    jpeg: bytes
    p_pain: float
    au: dict[str, float] | None
    mgs_au: float | None
    inference_ms: float


@dataclass
class FaceBank:
    """Rendered faces per (coat, level), each scored once by the real model."""

    faces: dict[tuple[str, float], list[BankFace]]
    model: dict[str, str | bool]
    threshold: float
    review_threshold: float
    responsive: bool
    correlation: float

    def pick(self, rng: np.random.Generator, coat: str, level: float) -> BankFace:
        nearest = float(LEVELS[int(np.argmin(np.abs(LEVELS - level)))])
        options = self.faces[(coat, nearest)]
        return options[int(rng.integers(len(options)))]


def build_bank(scorer, coats: set[str], variants: int = 3, seed: int = 7, size: int = 299) -> FaceBank:
    """Render ``variants`` faces per coat and level and score each with ``scorer`` (the real model)."""
    from amgs.synth.faces import render_face, sample_params

    rng = np.random.default_rng(seed)
    faces: dict[tuple[str, float], list[BankFace]] = {}
    levels_seen, p_seen = [], []
    for coat in sorted(coats):
        for level in LEVELS:
            for _ in range(variants):
                au = {k: float(np.clip(level + rng.normal(0, 0.15), 0, 2)) for k in AU_KEYS}
                img = render_face(sample_params(rng, au, coat=coat), size, seed=int(rng.integers(1 << 30)))
                s = scorer.score(img)
                buf = io.BytesIO()
                img.save(buf, "JPEG", quality=80, comment=b"amgs synthetic face - not a real mouse")
                faces.setdefault((coat, float(level)), []).append(
                    BankFace(float(level), coat, buf.getvalue(), s.p_pain, s.au, s.mgs_au, s.inference_ms)
                )
                levels_seen.append(float(level))
                p_seen.append(s.p_pain)
    p = np.array(p_seen)
    r = float(np.corrcoef(levels_seen, p)[0, 1]) if p.std() > 1e-6 else 0.0
    m = scorer.manifest
    return FaceBank(
        faces,
        {"name": m.name, "version": m.version, "sha256": m.sha256, "synthetic": m.synthetic},
        m.threshold,
        m.review_threshold,
        responsive=r >= 0.5 and float(p.max() - p.min()) >= 0.3,
        correlation=r,
    )


@dataclass(frozen=True)
class SimScore:
    p_pain: float
    label: str
    confidence: float
    needs_review: bool
    au: dict[str, float] | None
    mgs_au: float | None
    inference_ms: float
    jpeg: bytes | None


def curve_score(rng: np.random.Generator, level: float, threshold: float = 0.5) -> SimScore:
    """A score drawn from the study curve (used only when the model does not respond; see module doc)."""
    p = 1 / (1 + math.exp(-3.2 * (level - 1.0) + rng.normal(0, 0.9)))
    p = float(min(1.0, max(0.0, p)))
    au = {k: round(float(np.clip(level + rng.normal(0, 0.25), 0, 2)), 4) for k in AU_KEYS}
    label = LABELS[1] if p >= threshold else LABELS[0]
    confidence = max(p, 1 - p)
    return SimScore(
        round(p, 6),
        label,
        round(confidence, 6),
        confidence < 0.65,
        au,
        round(float(np.mean(list(au.values()))), 4),
        0.0,
        None,
    )


def bank_score(face: BankFace, bank: FaceBank) -> SimScore:
    label = LABELS[1] if face.p_pain >= bank.threshold else LABELS[0]
    confidence = max(face.p_pain, 1 - face.p_pain)
    return SimScore(
        face.p_pain,
        label,
        round(confidence, 6),
        confidence < bank.review_threshold,
        face.au,
        face.mgs_au,
        face.inference_ms,
        face.jpeg,
    )
