"""Whole SYNTHETIC cage frames for training and testing the face detector: several mice, clutter, IR, blur.

A home-cage camera sees bedding, a food hopper, a water spout, nesting material, cage bars, mice
facing away and, sometimes, faces. The detector has to find every face and nothing else, so the
generator draws all of these, each from one seeded generator (same seed, same pixels):

* 0-3 mice with a visible face (any coat, pose, grimace), each with its true face box;
* mice seen from behind or the side (a body and a tail, no face): the hard negatives;
* clutter: bedding speckles, pellets, a water spout, nesting material, cage bars;
* IR-like greyscale frames (night recordings) and directional motion blur;
* faces partly out of the frame (a mouse leaving the view): the box is clipped to the frame.

Face boxes follow :func:`amgs.synth.faces.render_scene`: the bounding box of the drawn head layer
(ears, head, whiskers), which is the crop the scoring model was trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from amgs.contract import AU_KEYS
from amgs.preprocess import Box
from amgs.synth.faces import (
    _COAT_RGB,
    COATS,
    SUPERSAMPLE,
    FaceParams,
    _background,
    _finish,
    draw_face_layer,
    sample_params,
)


@dataclass(frozen=True)
class SceneFace:
    box: Box  # x, y, w, h in frame pixels, clipped to the frame
    params: FaceParams
    visible: float  # fraction of the face box inside the frame


@dataclass(frozen=True)
class CageScene:
    image: Image.Image
    faces: tuple[SceneFace, ...]
    ir: bool
    motion_blur: float  # kernel length in pixels (0 = none)


@dataclass(frozen=True)
class SceneStyle:
    """How hard the scenes are. The defaults are what the shipped detector was trained on."""

    max_mice: int = 3
    face_frac: tuple[float, float] = (0.08, 0.33)  # face width as a fraction of the frame width
    p_ir: float = 0.25
    p_motion_blur: float = 0.2
    p_edge: float = 0.15  # a face partly outside the frame
    max_decoys: int = 2  # mice seen from behind


def _iou(a: Box, b: Box) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def _clutter(d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int, bg: tuple[int, ...]) -> None:
    """Bedding, pellets, a water spout, nesting material and bars: texture the detector must ignore."""
    floor = int(h * rng.uniform(0.6, 0.85))
    d.rectangle([0, floor, w, h], fill=tuple(int(c * rng.uniform(0.7, 0.95)) for c in bg) + (255,))
    for _ in range(int(rng.integers(40, 160))):  # bedding chips
        x, y = rng.uniform(0, w), rng.uniform(floor - h * 0.05, h)
        r = rng.uniform(0.004, 0.015) * w
        tone = int(rng.integers(120, 230))
        d.ellipse(
            [x - r, y - r * 0.5, x + r, y + r * 0.5], fill=(tone, int(tone * 0.9), int(tone * 0.7), 255)
        )
    for _ in range(int(rng.integers(0, 6))):  # food pellets
        x, y = rng.uniform(0, w), rng.uniform(floor, h)
        r = rng.uniform(0.01, 0.025) * w
        d.rounded_rectangle([x - r * 1.6, y - r, x + r * 1.6, y + r], radius=r * 0.6, fill=(112, 86, 52, 255))
    if rng.random() < 0.6:  # water spout from the top
        x = rng.uniform(0.1, 0.9) * w
        sw = 0.02 * w
        d.rectangle([x - sw, 0, x + sw, rng.uniform(0.15, 0.4) * h], fill=(170, 172, 178, 255))
    if rng.random() < 0.5:  # nesting material: a pale irregular blob
        cx, cy = rng.uniform(0, w), rng.uniform(floor - 0.1 * h, h)
        for _ in range(12):
            r = rng.uniform(0.02, 0.06) * w
            x, y = cx + rng.normal(0, 0.04 * w), cy + rng.normal(0, 0.03 * h)
            d.ellipse([x - r, y - r * 0.7, x + r, y + r * 0.7], fill=(232, 230, 222, 255))
    if rng.random() < 0.4:  # cage bars / lid wires
        step = rng.uniform(0.03, 0.08) * w
        tone = int(rng.integers(80, 200))
        for i in range(int(w / step) + 1):
            d.line(
                [(i * step, 0), (i * step + rng.normal(0, 3), h * 0.25)], fill=(tone,) * 3 + (255,), width=2
            )


def _decoy(d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int) -> None:
    """A mouse seen from behind: body and tail, no face."""
    coat = _COAT_RGB[str(rng.choice(COATS))]
    size = rng.uniform(0.1, 0.3) * w
    x, y = rng.uniform(-0.1, 0.9) * w, rng.uniform(0.2, 0.8) * h
    d.ellipse([x, y, x + size * 1.5, y + size * 0.9], fill=coat + (255,))
    ang = rng.uniform(0, 2 * math.pi)
    tx, ty = x + size * 0.75, y + size * 0.45
    d.line(
        [(tx, ty), (tx + math.cos(ang) * size * 1.2, ty + math.sin(ang) * size * 0.8)],
        fill=(220, 170, 170, 255),
        width=max(2, int(size / 30)),
    )


def motion_blur(arr: np.ndarray, length: float, angle: float) -> np.ndarray:
    """Directional blur with a line kernel of ``length`` pixels (a mouse or camera moving during exposure)."""
    import cv2

    k = max(3, int(round(length)) | 1)
    kernel = np.zeros((k, k), np.float32)
    c = k // 2
    dx, dy = math.cos(angle), math.sin(angle)
    for t in np.linspace(-c, c, 2 * k):
        kernel[int(round(c + dy * t)), int(round(c + dx * t))] = 1.0
    return cv2.filter2D(arr, -1, kernel / kernel.sum())


def to_ir(arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An IR night frame: grey, flatter contrast, a slight tint, a vignette from the IR LED ring."""
    grey = arr @ np.array([0.299, 0.587, 0.114], np.float32)
    grey = 128 + (grey - 128) * rng.uniform(0.6, 1.0)
    h, w = grey.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    vignette = 1 - 0.5 * (((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) * rng.uniform(0.5, 1.5))
    grey = grey * vignette
    tint = np.array([1.0, 1.0, rng.uniform(0.95, 1.05)], np.float32)
    return grey[..., None] * tint[None, None, :]


def render_cage_scene(
    rng: np.random.Generator,
    frame: tuple[int, int] = (1280, 720),
    style: SceneStyle | None = None,
    n_mice: int | None = None,
    aus: list[dict[str, float]] | None = None,
) -> CageScene:
    """One whole cage frame with 0..``max_mice`` visible faces (or ``n_mice``), each with its true box."""
    style = style or SceneStyle()
    w, h = frame
    n = int(rng.integers(0, style.max_mice + 1)) if n_mice is None else n_mice
    bgp = sample_params(rng, dict.fromkeys(AU_KEYS, 0.0))
    canvas = Image.fromarray(_background(bgp, frame).clip(0, 255).astype(np.uint8)).convert("RGBA")
    d = ImageDraw.Draw(canvas)
    _clutter(d, rng, w, h, bgp.background)
    for _ in range(int(rng.integers(0, style.max_decoys + 1))):
        _decoy(d, rng, w, h)
    faces: list[SceneFace] = []
    placed: list[Box] = []
    for i in range(n):
        level = float(rng.uniform(0, 2))
        au = (
            aus[i]
            if aus and i < len(aus)
            else {k: float(np.clip(level + rng.normal(0, 0.3), 0, 2)) for k in AU_KEYS}
        )
        p = sample_params(rng, au)
        fp = int(rng.uniform(*style.face_frac) * w)
        for _attempt in range(20):
            edge = rng.random() < style.p_edge
            lo_x, hi_x = (-0.35 * fp, w - 0.65 * fp) if edge else (0, w - fp)
            lo_y, hi_y = (-0.2 * fp, h - 0.8 * fp) if edge else (0, h - fp)
            fx, fy = int(rng.uniform(lo_x, max(lo_x + 1, hi_x))), int(rng.uniform(lo_y, max(lo_y + 1, hi_y)))
            if all(_iou((fx, fy, fp, fp), b) < 0.05 for b in placed):
                break
        else:
            continue
        placed.append((fx, fy, fp, fp))
        body = _COAT_RGB[p.coat]
        side = 1 if rng.random() < 0.5 else -1
        bx0 = fx + fp * 0.2 if side > 0 else fx - fp * 0.6
        d.ellipse([bx0, fy + fp * 0.45, bx0 + fp * 1.4, fy + fp * 1.3], fill=body + (255,))
        layer = draw_face_layer(p, fp * SUPERSAMPLE).resize((fp, fp), Image.Resampling.BOX)
        if p.roll_deg:
            layer = layer.rotate(p.roll_deg * 1.5, resample=Image.Resampling.BILINEAR)
        canvas.alpha_composite(layer, (max(fx, 0), max(fy, 0)), (max(-fx, 0), max(-fy, 0)))
        bbox = layer.getbbox()
        if not bbox:
            continue
        x0, y0, x1, y1 = fx + bbox[0], fy + bbox[1], fx + bbox[2], fy + bbox[3]
        cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        visible = (cx1 - cx0) * (cy1 - cy0) / max(1, (x1 - x0) * (y1 - y0))
        if cx1 - cx0 < 4 or cy1 - cy0 < 4:
            continue
        faces.append(SceneFace((cx0, cy0, cx1 - cx0, cy1 - cy0), p, float(visible)))
    arr = np.asarray(canvas.convert("RGB"), dtype=np.float32)
    ir = bool(rng.random() < style.p_ir)
    if ir:
        arr = to_ir(arr, rng)
    blur_len = float(rng.uniform(0.006, 0.025) * w) if rng.random() < style.p_motion_blur else 0.0
    if blur_len:
        arr = motion_blur(arr, blur_len, float(rng.uniform(0, math.pi)))
    image = _finish(arr, bgp, rng)
    return CageScene(image, tuple(faces), ir, blur_len)
