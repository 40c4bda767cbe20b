"""SYNTHETIC cage recordings with a known pain time course: the ground truth ``amgs score video`` is checked on.

A recording is a list of segments; in each, one mouse (one coat, one cage, the whole recording) shows
a given grimace level and does one thing:

    moving       the face drifts across the view (sharp)
    still        the face does not move at all (asleep; the device flags it after ``still_after_s``)
    blur         the mouse darts about: most frames are motion-blurred, a few are sharp
    away         no mouse in view (empty cage)
    back_turned  a mouse with its back to the camera: a body and a tail, no face

Frames are composed from pre-drawn layers (background, face per segment), so a minute of video renders
in seconds. The writer is OpenCV's (``mp4v`` for .mp4, ``MJPG`` for .avi).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from amgs.contract import AU_KEYS
from amgs.synth.faces import _COAT_RGB, SUPERSAMPLE, draw_face_layer, sample_params
from amgs.synth.scenes import _clutter, motion_blur

STATES = ("moving", "still", "blur", "away", "back_turned")


@dataclass(frozen=True)
class Segment:
    duration_s: float
    level: float  # grimace level (every action unit), 0-2
    state: str = "moving"

    @property
    def has_face(self) -> bool:
        return self.state not in ("away", "back_turned")


@dataclass(frozen=True)
class SegmentTruth:
    start_s: float
    end_s: float
    level: float
    state: str
    has_face: bool


def write_video(
    path: Path,
    segments: list[Segment],
    fps: float = 10.0,
    size: tuple[int, int] = (640, 360),
    seed: int = 0,
    face_frac: float = 0.25,
    coat: str | None = None,
) -> list[SegmentTruth]:
    """Render and write the recording; returns each segment's time span and truth."""
    import cv2

    for s in segments:
        if s.state not in STATES:
            raise ValueError(f"unknown segment state {s.state!r} (one of {', '.join(STATES)})")
    rng = np.random.default_rng(seed)
    w, h = size
    animal = sample_params(rng, dict.fromkeys(AU_KEYS, 0.0), coat=coat)
    bg = Image.fromarray(_cage(animal, size, rng)).convert("RGBA")
    fp = int(face_frac * w)
    noise = [rng.normal(0, 2.5, (h, w, 3)).astype(np.float32) for _ in range(7)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write {path}")
    truth = []
    t0 = 0.0
    frame_no = 0
    pos = np.array([rng.uniform(0.1, 0.6) * w, rng.uniform(0.1, 0.4) * h])
    try:
        for seg in segments:
            n = max(1, round(seg.duration_s * fps))
            params = replace(
                animal, au=dict.fromkeys(AU_KEYS, float(seg.level)), roll_deg=float(rng.normal(0, 5))
            )
            layer = draw_face_layer(params, fp * SUPERSAMPLE).resize((fp, fp), Image.Resampling.BOX)
            layer = layer.rotate(params.roll_deg, resample=Image.Resampling.BILINEAR)
            angle = rng.uniform(0, 2 * math.pi)
            velocity = 0.08 * w * np.array([math.cos(angle), math.sin(angle)])  # px per second
            for _i in range(n):
                canvas = bg.copy()
                d = ImageDraw.Draw(canvas)
                blurred = False
                if seg.state == "back_turned":
                    _back(d, animal.coat, pos, fp)
                elif seg.has_face:
                    if seg.state == "moving":
                        pos = pos + velocity / fps
                        for k, hi in enumerate((w - fp * 1.3, h - fp * 1.1)):  # bounce off the walls
                            if not 0 <= pos[k] <= hi:
                                velocity[k] = -velocity[k]
                    elif seg.state == "blur":
                        blurred = rng.random() < 0.7
                        pos = pos + (rng.normal(0, 0.01, 2) * np.array([w, h]) if blurred else 0)
                    pos = np.clip(pos, [0, 0], [w - fp * 1.3, h - fp * 1.1])
                    fx, fy = int(pos[0]), int(pos[1])
                    d.ellipse(
                        [fx + fp * 0.2, fy + fp * 0.45, fx + fp * 1.4, fy + fp * 1.15],
                        fill=_COAT_RGB[animal.coat] + (255,),
                    )
                    canvas.alpha_composite(layer, (fx, fy))
                arr = np.asarray(canvas.convert("RGB"), dtype=np.float32)
                if blurred:
                    arr = motion_blur(arr, 0.05 * w, float(rng.uniform(0, math.pi)))
                arr = arr + noise[frame_no % len(noise)]
                writer.write(cv2.cvtColor(arr.clip(0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
                frame_no += 1
            truth.append(SegmentTruth(t0, t0 + n / fps, seg.level, seg.state, seg.has_face))
            t0 += n / fps
    finally:
        writer.release()
    return truth


def _cage(animal, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    from amgs.synth.faces import _background

    w, h = size
    canvas = Image.fromarray(_background(animal, size).clip(0, 255).astype(np.uint8)).convert("RGBA")
    _clutter(ImageDraw.Draw(canvas), rng, w, h, animal.background)
    return np.asarray(canvas.convert("RGB"))


def _back(d: ImageDraw.ImageDraw, coat: str, pos: np.ndarray, fp: int) -> None:
    x, y = float(pos[0]), float(pos[1]) + fp * 0.3
    d.ellipse([x, y, x + fp * 1.5, y + fp * 0.9], fill=_COAT_RGB[coat] + (255,))
    d.line(
        [(x + fp * 1.4, y + fp * 0.5), (x + fp * 2.2, y + fp * 0.8)],
        fill=(220, 170, 170, 255),
        width=max(2, fp // 30),
    )


def window_truth(truth: list[SegmentTruth], start_s: float, end_s: float) -> SegmentTruth | None:
    """The segment that covers most of a window (None if the window is outside the recording)."""
    best, overlap = None, 0.0
    for seg in truth:
        o = min(end_s, seg.end_s) - max(start_s, seg.start_s)
        if o > overlap:
            best, overlap = seg, o
    return best
