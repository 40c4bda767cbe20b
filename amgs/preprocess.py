"""The one preprocessing path: image in, model input out.

Training, int8 calibration, batch scoring and the device all call these functions, so a model never
sees different pixels in production than it saw in training:

    decode (EXIF orientation, greyscale/RGBA -> RGB) -> crop box -> bilinear resize -> uint8 RGB pixels
    pixels -> float  (pixel - mean) / std                        (training and calibration stop here)
    float  -> quantized input with the input tensor's scale and zero point   (the int8 model)

The float->quantized step is a per-pixel function, so for 8-bit inputs it is applied as a 256-entry
lookup table built from the very same formula (bit-identical, and ~5x cheaper than float math).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from amgs.manifest import InputSpec

Box = tuple[int, int, int, int]  # x, y, w, h in pixels of the upright image
ImageSource = str | Path | bytes | Image.Image | np.ndarray

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
_ORIENT_SWAPS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


class ImageError(ValueError):
    """An image could not be read or used; the message names the file and the problem."""


@dataclass(frozen=True)
class Prepared:
    pixels: np.ndarray  # HxWx3 uint8 RGB at model size
    source_size: tuple[int, int]  # (w, h) of the upright source image


def _describe(source: ImageSource) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<{type(source).__name__}>"


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent areas become black, as a camera would never produce them anyway.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() or 1.0
        return Image.fromarray((arr * (255.0 / hi)).astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def open_image(
    source: ImageSource, draft_for: tuple[int, int] | None = None, box: Box | None = None
) -> Image.Image:
    """Decode to an upright RGB image. ``draft_for`` lets JPEG decoding skip resolution that the
    later resize would throw away (DCT scaling); ``box`` is the crop that will be taken."""
    return _decode(source, draft_for, box)[0]


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block must not stop scoring
        return 1


def _decode(
    source: ImageSource, draft_for: tuple[int, int] | None, box: Box | None
) -> tuple[Image.Image, tuple[int, int]]:
    """Open once: the upright RGB image and the full-resolution upright size (measured before any draft)."""
    if isinstance(source, np.ndarray):
        if source.ndim == 2:
            source = np.stack([source] * 3, axis=-1)
        if source.ndim != 3 or source.shape[2] not in (3, 4) or source.dtype != np.uint8:
            raise ImageError(f"array of shape {source.shape} {source.dtype}: expected HxWx3 uint8 RGB")
        return _to_rgb(Image.fromarray(source)), (int(source.shape[1]), int(source.shape[0]))
    if isinstance(source, Image.Image):
        w, h = source.size
        full = (h, w) if _orientation(source) in _ORIENT_SWAPS else (w, h)
        return _to_rgb(ImageOps.exif_transpose(source)), full
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        orientation = _orientation(img)
        w, h = img.size
        if orientation in _ORIENT_SWAPS:
            w, h = h, w
        full = (w, h)
        if draft_for is not None and img.format == "JPEG":
            bw, bh = (box[2], box[3]) if box else (w, h)
            want = (math.ceil(w * draft_for[0] / max(bw, 1)), math.ceil(h * draft_for[1] / max(bh, 1)))
            if orientation in _ORIENT_SWAPS:
                want = (want[1], want[0])
            img.draft("RGB", want)
        img.load()
        if orientation != 1:  # exif_transpose copies the whole image even when nothing turns
            img = ImageOps.exif_transpose(img)
        return _to_rgb(img), full
    except FileNotFoundError:
        raise ImageError(f"{_describe(source)}: no such file") from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{_describe(source)}: not an image Pillow can read (corrupt or unsupported format)"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated / corrupt data
        raise ImageError(f"{_describe(source)}: cannot decode ({e})") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{_describe(source)}: refused, too many pixels ({e})") from None


def _clip_box(box: Box, size: tuple[int, int], source: str) -> tuple[float, float, float, float]:
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise ImageError(f"{source}: crop box {box} has no area")
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(size[0], x + w), min(size[1], y + h)
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ImageError(f"{source}: crop box {box} lies outside the {size[0]}x{size[1]} image")
    return float(x0), float(y0), float(x1), float(y1)


def load_pixels(source: ImageSource, size: tuple[int, int], box: Box | None = None) -> Prepared:
    """Decode, crop and resize to ``size`` = (width, height): the uint8 RGB pixels a model sees."""
    name = _describe(source)
    if isinstance(source, (str, Path)) and Path(source).is_file() and Path(source).stat().st_size == 0:
        raise ImageError(f"{name}: empty file")
    # Box coordinates refer to the full-resolution upright image, measured before any draft.
    img, full_size = _decode(source, size, box)
    scale = (img.size[0] / full_size[0], img.size[1] / full_size[1])
    region = None
    if box is not None:
        x0, y0, x1, y1 = _clip_box(box, full_size, name)
        region = (x0 * scale[0], y0 * scale[1], x1 * scale[0], y1 * scale[1])
    out = img.resize(size, Image.Resampling.BILINEAR, box=region)
    return Prepared(np.asarray(out, dtype=np.uint8), full_size)


def to_float(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 RGB -> the float the network was trained on. Training and calibration use exactly this."""
    return (pixels.astype(np.float32) - np.float32(spec.mean)) / np.float32(spec.std)


def quantize(x: np.ndarray, quantization: tuple[float, int], dtype: str) -> np.ndarray:
    """Float -> integer input with the tensor's own scale and zero point (round half to even, clip)."""
    scale, zero = quantization
    info = np.iinfo(np.dtype(dtype))
    q = np.round(x / np.float32(scale)) + zero
    return np.clip(q, info.min, info.max).astype(dtype)


@lru_cache(maxsize=16)
def _lut(spec: InputSpec) -> np.ndarray:
    levels = np.arange(256, dtype=np.uint8)
    return quantize(to_float(levels, spec), spec.quantization, spec.dtype)


def to_model_input(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 RGB pixels -> the model's input tensor values (1xHxWxC)."""
    if spec.dtype == "float32":
        x = to_float(pixels, spec)
    elif spec.quantization is None:
        raise ValueError(f"input dtype {spec.dtype} needs a quantization (scale, zero point) in the manifest")
    else:
        x = np.take(_lut(spec), pixels)  # the same values as _lut(spec)[pixels], ~2x faster
    return x[None]


def prepare(source: ImageSource, spec: InputSpec, box: Box | None = None) -> np.ndarray:
    """Image -> model input in one call (what batch scoring and the device use)."""
    return to_model_input(load_pixels(source, (spec.width, spec.height), box).pixels, spec)


def iter_image_files(paths: list[Path]) -> list[Path]:
    """Expand files and folders (recursively) into image files, sorted for a stable order."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES))
        else:
            out.append(p)
    return out
