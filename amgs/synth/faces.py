"""Procedural mouse faces whose grimace is set by the five MGS action units. SYNTHETIC, never real data.

Each action unit (0 absent .. 2 obvious, continuous here) drives one drawn feature, as in Langford 2010:
    ot  orbital tightening -> eye aperture shrinks to a slit, wrinkles around the eye
    nb  nose bulge         -> a rounded, shaded bulge on the bridge of the nose
    cb  cheek bulge        -> cheeks swell beyond the face outline
    ep  ear position       -> ears rotate back and out, fold narrower and sit lower
    wc  whisker change     -> whiskers pulled back and clumped instead of fanned out
Nuisance factors: coat colour (white, black, agouti), pose (roll, scale, offset, yaw), lighting
gradient, blur, sensor noise and cage background. Everything is drawn from one seeded generator, so
the same seed always gives the same pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from amgs.contract import AU_KEYS

COATS = ("white", "black", "agouti")
SUPERSAMPLE = 2

_COAT_RGB = {"white": (236, 232, 226), "black": (38, 36, 36), "agouti": (124, 98, 72)}
_EAR_INNER = {"white": (236, 178, 182), "black": (70, 60, 62), "agouti": (170, 120, 110)}
_EYE = {"white": (178, 36, 60), "black": (12, 12, 14), "agouti": (14, 12, 12)}
_NOSE = {"white": (222, 150, 160), "black": (60, 52, 54), "agouti": (150, 100, 96)}
_WHISKER = {"white": (112, 108, 104), "black": (176, 176, 172), "agouti": (40, 34, 30)}
_CONTRAST = {"white": (120, 116, 112), "black": (120, 116, 112), "agouti": (70, 52, 38)}


@dataclass(frozen=True)
class FaceParams:
    """Everything that determines one rendered face."""

    au: dict[str, float]
    coat: str = "white"
    roll_deg: float = 0.0
    scale: float = 1.0
    offset: tuple[float, float] = (0.0, 0.0)  # fraction of image size
    yaw: float = 0.0  # -1..1, shifts features sideways and shortens the far side
    brightness: float = 1.0
    gradient: float = 0.0  # lighting gradient strength 0..0.5
    gradient_angle: float = 0.0
    blur: float = 0.0  # Gaussian blur radius in output pixels
    noise: float = 0.0  # sensor noise sigma in grey levels
    background: tuple[int, int, int] = (150, 150, 146)
    texture_seed: int = 0
    extras: dict[str, float] = field(default_factory=dict)

    @property
    def mean_au(self) -> float:
        return float(np.mean([self.au[k] for k in AU_KEYS]))


def sample_params(
    rng: np.random.Generator, au: dict[str, float], coat: str | None = None, hard: bool = False
) -> FaceParams:
    """Random nuisance factors around given action units. ``hard`` widens pose, light and blur ranges."""
    k = 1.6 if hard else 1.0
    bg_base = rng.choice(
        np.array(
            [[150, 150, 146], [182, 176, 160], [110, 118, 128], [196, 196, 198], [92, 84, 72]], dtype=np.int64
        )
    )
    bg = tuple(int(np.clip(c + rng.normal(0, 12), 0, 255)) for c in bg_base)
    return FaceParams(
        au={a: float(au[a]) for a in AU_KEYS},
        coat=coat or str(rng.choice(COATS)),
        roll_deg=float(rng.normal(0, 8 * k)),
        scale=float(rng.uniform(0.82, 1.05) if not hard else rng.uniform(0.7, 1.08)),
        offset=(float(rng.normal(0, 0.03 * k)), float(rng.normal(0, 0.03 * k))),
        yaw=float(np.clip(rng.normal(0, 0.15 * k), -0.45, 0.45)),
        brightness=float(rng.uniform(0.8, 1.15) if not hard else rng.uniform(0.6, 1.3)),
        gradient=float(rng.uniform(0, 0.25 * k)),
        gradient_angle=float(rng.uniform(0, 2 * math.pi)),
        blur=float(abs(rng.normal(0, 0.4 * k))),
        noise=float(rng.uniform(1, 5 * k)),
        background=bg,  # type: ignore[arg-type]
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


def _rot(x: float, y: float, deg: float) -> tuple[float, float]:
    a = math.radians(deg)
    return x * math.cos(a) - y * math.sin(a), x * math.sin(a) + y * math.cos(a)


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: float) -> tuple[int, int, int]:
    t = min(1.0, max(0.0, t))
    return tuple(int(round(a[i] * (1 - t) + b[i] * t)) for i in range(3))  # type: ignore[return-value]


def _ellipse_poly(
    cx: float, cy: float, rx: float, ry: float, deg: float = 0.0, n: int = 40
) -> list[tuple[float, float]]:
    pts = []
    for i in range(n):
        t = 2 * math.pi * i / n
        x, y = _rot(rx * math.cos(t), ry * math.sin(t), deg)
        pts.append((cx + x, cy + y))
    return pts


def draw_face_layer(p: FaceParams, size: int) -> Image.Image:
    """Draw the mouse head (no background) on a transparent square RGBA layer of ``size`` pixels."""
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    u = size * 0.25
    cx, cy = size / 2, size * 0.53
    coat = _COAT_RGB[p.coat]
    contrast = _CONTRAST[p.coat]
    ot, nb, cb, ep, wc = (min(2.0, max(0.0, p.au[k])) / 2.0 for k in AU_KEYS)
    yaw = p.yaw

    def P(x: float, y: float) -> tuple[float, float]:
        # Yaw: features move sideways and the far half narrows.
        side = 1.0 - 0.25 * yaw * (1 if x > 0 else -1)
        return cx + (x * side + yaw * 0.25 * (1.2 - abs(y) * 0.3)) * u, cy + y * u

    # Ears (behind the head): upright and forward at ep=0; back, out, lower and folded at ep=2.
    for s in (-1, 1):
        ex, ey = P(s * (0.78 + 0.32 * ep), -0.98 + 0.42 * ep)
        rx, ry = 0.5 * u, 0.6 * u * (1 - 0.45 * ep)
        tilt = s * (12 + 58 * ep)
        d.polygon(_ellipse_poly(ex, ey, rx, ry, tilt), fill=_mix(coat, contrast, 0.08) + (255,))
        d.polygon(_ellipse_poly(ex, ey, rx * 0.68, ry * 0.66, tilt), fill=_EAR_INNER[p.coat] + (255,))
        if ep > 0.3:  # fold line
            fx, fy = _rot(0, ry * 0.5, tilt)
            d.line(
                [(ex - fx, ey - fy), (ex + fx, ey + fy)],
                fill=_mix(coat, contrast, 0.5) + (255,),
                width=max(1, int(u * 0.04 * ep)),
            )

    # Head: broad at the eyes, tapering to the snout.
    head = []
    for i in range(64):
        t = 2 * math.pi * i / 64
        y = 1.28 * math.sin(t)
        taper = 1.0 - 0.5 * max(0.0, y / 1.28) ** 1.3
        head.append(P(1.0 * math.cos(t) * taper, y))
    d.polygon(head, fill=coat + (255,))

    # Cheeks swell outwards with cb.
    for s in (-1, 1):
        ccx, ccy = P(s * (0.52 + 0.14 * cb), 0.42)
        rx, ry = (0.3 + 0.2 * cb) * u, (0.28 + 0.12 * cb) * u
        d.polygon(
            _ellipse_poly(ccx, ccy, rx, ry, s * 10), fill=_mix(coat, contrast, 0.06 + 0.22 * cb) + (255,)
        )
        d.polygon(_ellipse_poly(ccx, ccy, rx * 0.86, ry * 0.84, s * 10), fill=coat + (255,))

    # Nose bulge: shaded rounded swelling on the bridge.
    bx, by = P(0, 0.32)
    brx, bry = (0.16 + 0.14 * nb) * u, (0.26 + 0.14 * nb) * u
    d.polygon(_ellipse_poly(bx, by, brx, bry), fill=_mix(coat, contrast, 0.05 + 0.3 * nb) + (255,))
    d.polygon(
        _ellipse_poly(bx, by - 0.04 * u * nb, brx * 0.7, bry * 0.7),
        fill=_mix(coat, (255, 255, 255), 0.05 + 0.2 * nb) + (255,),
    )

    # Eyes: aperture shrinks to a slit with ot; wrinkles appear around the eye.
    for s in (-1, 1):
        ex, ey = P(s * 0.43, -0.28)
        w, h = 0.21 * u, 0.17 * u * (1 - 0.88 * ot)
        if ot > 0.2:
            for j in range(1 + int(ot * 3)):
                r = w * (1.3 + 0.22 * j)
                d.arc(
                    [ex - r, ey - r * 0.8, ex + r, ey + r * 0.8],
                    200,
                    340,
                    fill=_mix(coat, contrast, 0.35 + 0.4 * ot) + (255,),
                    width=max(1, int(u * 0.03)),
                )
        d.polygon(_ellipse_poly(ex, ey, w, max(h, 0.012 * u), s * 8), fill=_EYE[p.coat] + (255,))
        if h > 0.06 * u:
            d.ellipse(
                [ex - 0.05 * u, ey - h * 0.5, ex + 0.01 * u, ey - h * 0.5 + 0.06 * u],
                fill=(240, 240, 240, 255),
            )

    # Nose pad at the snout tip.
    nx, ny = P(0, 1.18)
    d.polygon(
        [(nx - 0.13 * u, ny - 0.1 * u), (nx + 0.13 * u, ny - 0.1 * u), (nx, ny + 0.06 * u)],
        fill=_NOSE[p.coat] + (255,),
    )

    # Whiskers: fanned and drooping at wc=0; pulled back, straight and clumped at wc=2.
    wcol = _WHISKER[p.coat] + (255,)
    width = max(1, int(u * 0.022))
    for s in (-1, 1):
        px, py = P(s * 0.3, 0.9)
        spread = 34 * (1 - 0.8 * wc)
        base = -6 + 48 * wc  # degrees above horizontal, pointing back toward the head
        length = (1.35 - 0.25 * wc) * u
        droop = 0.25 * (1 - wc)
        for i in range(6):
            ang = math.radians(base + spread * (i / 5 - 0.5) * 2)
            pts = []
            for k in range(6):
                t = k / 5
                x = px + s * length * t * math.cos(ang)
                y = py - length * t * math.sin(ang) + droop * u * t * t
                pts.append((x, y))
            d.line(pts, fill=wcol, width=width)
    return layer


def _background(p: FaceParams, size: tuple[int, int]) -> np.ndarray:
    rng = np.random.default_rng(p.texture_seed)
    w, h = size
    small = rng.normal(0, 1, (max(2, h // 24), max(2, w // 24), 1)).astype(np.float32)
    tex = (
        np.asarray(
            Image.fromarray(((small[..., 0] * 20) + 128).clip(0, 255).astype(np.uint8)).resize(
                (w, h), Image.Resampling.BICUBIC
            ),
            dtype=np.float32,
        )
        - 128
    )
    base = np.array(p.background, dtype=np.float32)[None, None, :]
    return base + tex[..., None]


def _finish(arr: np.ndarray, p: FaceParams, rng: np.random.Generator) -> Image.Image:
    h, w = arr.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = ((xx / w - 0.5) * math.cos(p.gradient_angle) + (yy / h - 0.5) * math.sin(p.gradient_angle)) * 2
    arr = arr * (p.brightness * (1 + p.gradient * ramp))[..., None]
    img = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
    if p.blur > 0.05:
        img = img.filter(ImageFilter.GaussianBlur(p.blur))
    if p.noise > 0:
        noisy = np.asarray(img, dtype=np.float32) + rng.normal(0, p.noise, (h, w, 3)).astype(np.float32)
        img = Image.fromarray(noisy.clip(0, 255).astype(np.uint8))
    return img


def render_face(p: FaceParams, size: int = 299, seed: int = 0) -> Image.Image:
    """A face crop: the head fills most of a ``size`` x ``size`` frame, as MGS images do."""
    big = size * SUPERSAMPLE
    layer = draw_face_layer(p, big)
    if p.roll_deg:
        layer = layer.rotate(p.roll_deg, resample=Image.Resampling.BILINEAR, center=(big / 2, big * 0.53))
    if p.scale != 1.0:
        s = max(8, int(big * p.scale))
        layer = layer.resize((s, s), Image.Resampling.BILINEAR)
    canvas = Image.fromarray(_background(p, (big, big)).clip(0, 255).astype(np.uint8)).convert("RGBA")
    ox = int(big / 2 - layer.width / 2 + p.offset[0] * big)
    oy = int(big / 2 - layer.height / 2 + p.offset[1] * big)
    canvas.alpha_composite(layer, (max(ox, 0), max(oy, 0)), (max(-ox, 0), max(-oy, 0)))
    small = canvas.convert("RGB").resize((size, size), Image.Resampling.BOX)
    return _finish(np.asarray(small, dtype=np.float32), p, np.random.default_rng(seed))


@dataclass(frozen=True)
class Scene:
    image: Image.Image
    face_box: tuple[int, int, int, int] | None  # x, y, w, h; None when no usable face is in view
    kind: str  # "face", "empty", "back_turned", "dark_blur"


def render_scene(
    p: FaceParams | None,
    frame: tuple[int, int] = (1280, 720),
    face_px: int = 300,
    rng: np.random.Generator | None = None,
    kind: str = "face",
) -> Scene:
    """A whole camera frame of an observation box: a mouse whose face lies in a known box, or no usable face."""
    rng = rng or np.random.default_rng(0)
    bgp = p or FaceParams(au=dict.fromkeys(AU_KEYS, 0.0), texture_seed=int(rng.integers(0, 2**31 - 1)))
    w, h = frame
    arr = _background(bgp, frame)
    canvas = Image.fromarray(arr.clip(0, 255).astype(np.uint8)).convert("RGBA")
    d = ImageDraw.Draw(canvas)
    # Cage floor edge and bedding speckles make it look like a box, not a studio.
    d.rectangle([0, int(h * 0.78), w, h], fill=tuple(int(c * 0.85) for c in bgp.background) + (255,))
    box = None
    if kind == "face" and p is not None:
        fx = int(rng.uniform(0.05, 0.95) * (w - face_px))
        fy = int(rng.uniform(0.05, 0.7) * (h - face_px))
        body = _COAT_RGB[p.coat]
        d.ellipse(
            [fx + face_px * 0.2, fy + face_px * 0.45, fx + face_px * 1.6, fy + face_px * 1.3],
            fill=body + (255,),
        )
        layer = draw_face_layer(p, face_px * SUPERSAMPLE).resize((face_px, face_px), Image.Resampling.BOX)
        if p.roll_deg:
            layer = layer.rotate(p.roll_deg, resample=Image.Resampling.BILINEAR)
        canvas.alpha_composite(layer, (fx, fy))
        bbox = layer.getbbox()
        if bbox:
            box = (fx + bbox[0], fy + bbox[1], bbox[2] - bbox[0], bbox[3] - bbox[1])
    elif kind == "back_turned":
        coat = _COAT_RGB[str(rng.choice(COATS))]
        fx, fy = int(w * rng.uniform(0.2, 0.6)), int(h * rng.uniform(0.3, 0.5))
        d.ellipse([fx, fy, fx + face_px * 1.5, fy + face_px * 0.9], fill=coat + (255,))
        d.line(
            [(fx + face_px * 1.4, fy + face_px * 0.5), (fx + face_px * 2.3, fy + face_px * 0.8)],
            fill=(220, 170, 170, 255),
            width=max(2, face_px // 30),
        )
    img = canvas.convert("RGB")
    fin = replace(
        bgp,
        gradient=bgp.gradient,
        blur=bgp.blur if kind != "dark_blur" else 12.0,
        brightness=bgp.brightness if kind != "dark_blur" else 0.25,
    )
    return Scene(_finish(np.asarray(img, dtype=np.float32), fin, rng), box, kind)
