"""Control images a mouse-face model must refuse to score: made here, or shipped inside a PyPI wheel.

Used to choose and to check the in-domain test (:mod:`amgs.domain`): every control should come out
``unscorable``. Kinds (each seeded, so a set is reproducible):

- ``flat``: one grey level or colour (0, 128 and 255 always among them)
- ``uniform_noise``, ``gaussian_noise``: sensor-like noise over the whole frame
- ``checkerboard``, ``gradient``: synthetic patterns with strong edges or none
- ``no_face_scene``: the generator's own cage frames with no usable face (empty, back turned, dark/blurred)
- ``overexposed``, ``underexposed``: synthetic faces blown out or nearly black
- ``photo``: real non-mouse photographs that scikit-image ships in its wheel (``skimage.data``, no download),
  whole and as random crops

Nothing here is a mouse; nothing here is downloaded at run time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from amgs.contract import AU_KEYS
from amgs.synth.faces import render_face, render_scene, sample_params

# skimage.data images that are inside the scikit-image wheel (no pooch download): photos and micrographs.
SKIMAGE_PHOTOS = (
    "astronaut",
    "camera",
    "coffee",
    "chelsea",
    "rocket",
    "coins",
    "moon",
    "page",
    "text",
    "clock",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "brick",
    "grass",
    "gravel",
    "cell",
    "colorwheel",
    "logo",
)

KINDS = (
    "flat",
    "uniform_noise",
    "gaussian_noise",
    "checkerboard",
    "gradient",
    "no_face_scene",
    "overexposed",
    "underexposed",
    "photo",
)


@dataclass(frozen=True)
class Control:
    kind: str
    name: str
    pixels: np.ndarray  # H x W x 3 uint8 (any size; scored through amgs.preprocess like any image)


def _rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    return np.ascontiguousarray(a[..., :3].astype(np.uint8))


def skimage_photo(name: str) -> np.ndarray:
    """One of :data:`SKIMAGE_PHOTOS` as RGB uint8; says how to get scikit-image when it is missing."""
    try:
        from skimage import data
    except ImportError:
        raise ImportError(
            "the photo controls come from scikit-image's bundled sample images: "
            "pip install 'amgs[models]' (or scikit-image)"
        ) from None
    return _rgb(getattr(data, name)())


def _flat(rng: np.random.Generator, i: int, size: int) -> np.ndarray:
    fixed = (0, 128, 255)
    colour = (fixed[i],) * 3 if i < len(fixed) else tuple(int(v) for v in rng.integers(0, 256, 3))
    return np.broadcast_to(np.array(colour, np.uint8), (size, size, 3)).copy()


def _checkerboard(rng: np.random.Generator, size: int) -> np.ndarray:
    cell = int(rng.integers(4, 80))
    yy, xx = np.mgrid[0:size, 0:size]
    mask = ((yy // cell + xx // cell) % 2).astype(bool)
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    return np.where(mask[..., None], a, b).astype(np.uint8)


def _gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1) - 0.5
    t = (xx * np.cos(angle) + yy * np.sin(angle)) / np.sqrt(0.5) + 0.5
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    return (a + (b - a) * np.clip(t, 0, 1)[..., None]).astype(np.uint8)


def _face(rng: np.random.Generator, size: int) -> np.ndarray:
    level = float(rng.uniform(0, 2))
    params = sample_params(rng, dict.fromkeys(AU_KEYS, level))
    return np.asarray(render_face(params, size, seed=int(rng.integers(0, 2**31 - 1))), dtype=np.float32)


def _scene(rng: np.random.Generator, size: int) -> np.ndarray:
    kind = str(rng.choice(["empty", "back_turned", "dark_blur"]))
    scene = render_scene(None, frame=(640, 360), face_px=int(rng.integers(120, 220)), rng=rng, kind=kind)
    img = scene.image
    if rng.random() < 0.5:  # a crop where a face box might have been
        s = int(rng.integers(150, 340))
        x, y = int(rng.integers(0, 640 - s)), int(rng.integers(0, 360 - s))
        img = img.crop((x, y, x + s, y + s))
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR))


def _photo(rng: np.random.Generator, i: int, size: int) -> tuple[str, np.ndarray]:
    name = SKIMAGE_PHOTOS[i % len(SKIMAGE_PHOTOS)]
    img = skimage_photo(name)
    if i >= len(SKIMAGE_PHOTOS):  # second and later rounds: random square crops
        h, w = img.shape[:2]
        s = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        img, name = img[y : y + s, x : x + s], f"{name}_crop{i // len(SKIMAGE_PHOTOS)}"
    return name, img


def make_controls(
    n_per_kind: int, seed: int = 0, size: int = 299, kinds: tuple[str, ...] = KINDS
) -> Iterator[Control]:
    """``n_per_kind`` images of each kind (photos: every photo once, then random crops)."""
    rng = np.random.default_rng(seed)
    for kind in kinds:
        for i in range(n_per_kind):
            name = f"{kind}_{i:03d}"
            if kind == "flat":
                px = _flat(rng, i, size)
            elif kind == "uniform_noise":
                px = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            elif kind == "gaussian_noise":
                mean, sigma = rng.uniform(40, 215), rng.uniform(10, 80)
                px = np.clip(rng.normal(mean, sigma, (size, size, 3)), 0, 255).astype(np.uint8)
            elif kind == "checkerboard":
                px = _checkerboard(rng, size)
            elif kind == "gradient":
                px = _gradient(rng, size)
            elif kind == "no_face_scene":
                px = _scene(rng, size)
            elif kind == "overexposed":
                px = np.clip(_face(rng, size) * rng.uniform(3.0, 6.0), 0, 255).astype(np.uint8)
            elif kind == "underexposed":
                px = np.clip(_face(rng, size) * rng.uniform(0.04, 0.12), 0, 255).astype(np.uint8)
            elif kind == "photo":
                name, px = _photo(rng, i, size)
            else:
                raise ValueError(f"unknown control kind {kind!r}; known: {', '.join(KINDS)}")
            yield Control(kind, name, px)
