"""Frame selection: which frame of a burst is worth scoring, and is the animal moving at all.

Per view and burst: crop each frame (configured region, detector box, or whole frame), measure
quality on the very pixels the model would see (variance of Laplacian for sharpness, mean grey for
exposure, face size in source pixels), reject what fails, and keep the passing frame with the least
motion (as Rodent Face Finder does). Motion energy between consecutive frames is reported per burst
as an activity covariate; motion below a threshold for ``still_after_s`` marks the animal as possibly
asleep, which is flagged or excluded by config.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import cv2
import numpy as np

from amgs.device.config import SelectionSection, ViewSection
from amgs.device.sources import Frame
from amgs.preprocess import Box, ImageError, load_pixels

MOTION_THUMB = 64
"""Side of the grey thumbnail motion is measured on (robust to noise, cheap)."""


def sharpness(pixels: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image (higher = sharper)."""
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    _, std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_16S))  # int16 holds every 3x3 Laplacian of uint8
    return float(std[0, 0]) ** 2


def exposure(pixels: np.ndarray) -> float:
    """Mean grey level 0-255."""
    return float(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY).mean())


def thumbnail(crop: np.ndarray) -> np.ndarray:
    """Small grey version of the model-size crop that motion is measured on."""
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (MOTION_THUMB, MOTION_THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)


def motion(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute grey difference between two thumbnails."""
    return float(np.abs(a - b).mean())


@dataclass
class Candidate:
    frame: Frame
    box: Box
    pixels: np.ndarray  # model-size RGB uint8 crop
    sharpness: float
    exposure: float
    face_px: int
    motion: float = 0.0
    det_score: float | None = None  # the face detector's score for this box (None: region / whole frame)


@dataclass
class Selection:
    """The frame chosen from one burst for one view, with what the record needs."""

    view: ViewSection
    chosen: Candidate
    motion_energy: float
    asleep: bool


@dataclass
class BurstOutcome:
    selection: Selection | None
    rejected: Counter = field(default_factory=Counter)
    motion_energy: float | None = None


class ViewSelector:
    """Keeps per-view state (last thumbnail, last time the animal moved) across bursts."""

    def __init__(self, view: ViewSection, cfg: SelectionSection, model_size: tuple[int, int], detector=None):
        self.view = view
        self.cfg = cfg
        self.model_size = model_size
        self.detector = detector
        self._last_thumb: np.ndarray | None = None
        self._last_active: datetime | None = None

    def face_box(self, frame: Frame) -> Box | None:
        """The configured region; with a detector, the best detection inside it (or in the whole frame)."""
        return self.locate(frame)[0]

    def locate(self, frame: Frame) -> tuple[Box | None, float | None]:
        """(face box, detector score): the region itself, or the detector's best face inside it."""
        w, h = frame.size
        region = self.view.region or (0, 0, w, h)
        if self.detector is None:
            return region, None
        x, y, rw, rh = region
        crop = frame.pixels[y : y + rh, x : x + rw]
        if hasattr(self.detector, "best"):  # amgs.detect.FaceDetector: box and score
            det = self.detector.best(crop)
            found, score = (det.box, det.score) if det else (None, None)
        else:  # a user's SSD model (amgs.device.detector.Detector)
            found, score = self.detector.best_box(crop), None
        return (None, None) if found is None else ((found[0] + x, found[1] + y, found[2], found[3]), score)

    def _candidate(self, frame: Frame, rejected: Counter) -> Candidate | None:
        try:
            box, score = self.locate(frame)
            if box is None:
                rejected["no_face"] += 1
                return None
            w, h = frame.size
            x0, y0 = max(0, box[0]), max(0, box[1])
            clipped = (x0, y0, min(w, box[0] + box[2]) - x0, min(h, box[1] + box[3]) - y0)
            if clipped[2] < 2 or clipped[3] < 2:
                rejected["region_outside_frame"] += 1
                return None
            pixels = load_pixels(frame.image, self.model_size, clipped).pixels
        except ImageError:
            rejected["unreadable"] += 1  # e.g. a truncated JPEG whose header was fine
            return None
        return Candidate(
            frame,
            clipped,
            pixels,
            sharpness(pixels),
            exposure(pixels),
            min(clipped[2], clipped[3]),
            det_score=score,
        )

    def motion_thumbnail(self, c: Candidate) -> np.ndarray:
        """What motion is measured on: the crop for a fixed region; the whole view with a detector, whose
        box follows the face (a face-centred crop of a walking mouse hardly changes, so it would look asleep)."""
        if self.detector is None:
            return thumbnail(c.pixels)
        w, h = c.frame.size
        x, y, rw, rh = self.view.region or (0, 0, w, h)
        return thumbnail(np.ascontiguousarray(c.frame.pixels[y : y + rh, x : x + rw]))

    def _gate(self, c: Candidate) -> str | None:
        if c.face_px < self.cfg.min_face_px:
            return "face_too_small"
        if c.exposure < self.cfg.min_exposure:
            return "too_dark"
        if c.exposure > self.cfg.max_exposure:
            return "too_bright"
        if c.sharpness < self.cfg.min_sharpness:
            return "blurry"
        return None

    def select(self, frames: list[Frame]) -> BurstOutcome:
        rejected: Counter = Counter()
        cands = [c for c in (self._candidate(f, rejected) for f in frames) if c is not None]
        if not cands:
            return BurstOutcome(None, rejected)
        thumbs = [self.motion_thumbnail(c) for c in cands]
        diffs = [motion(a, b) for a, b in zip(thumbs, thumbs[1:], strict=False)]
        if self._last_thumb is not None:
            diffs.insert(0, motion(self._last_thumb, thumbs[0]))
            for i, c in enumerate(cands):
                c.motion = diffs[i]
        else:
            for i, c in enumerate(cands):
                c.motion = diffs[i - 1] if i > 0 else (diffs[0] if diffs else 0.0)
        self._last_thumb = thumbs[-1]
        energy = float(np.mean(diffs)) if diffs else 0.0
        asleep = self._asleep(energy, cands[0].frame.captured_at, cands[-1].frame.captured_at, bool(diffs))
        passing = []
        for c in cands:
            reason = self._gate(c)
            if reason:
                rejected[reason] += 1
            else:
                passing.append(c)
        if not passing:
            return BurstOutcome(None, rejected, energy)
        if asleep and self.cfg.asleep == "exclude":
            rejected["asleep"] += len(passing)
            return BurstOutcome(None, rejected, energy)
        best = min(passing, key=lambda c: (c.motion, -c.sharpness))
        return BurstOutcome(Selection(self.view, best, energy, asleep), rejected, energy)

    def _asleep(self, energy: float, first: datetime, last: datetime, measured: bool) -> bool:
        if self._last_active is None or (measured and energy >= self.cfg.motion_threshold):
            self._last_active = last if measured and energy >= self.cfg.motion_threshold else first
            return False
        return (last - self._last_active).total_seconds() >= self.cfg.still_after_s
