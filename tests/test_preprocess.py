import io

import numpy as np
import pytest
from PIL import Image

from amgs.manifest import InputSpec
from amgs.preprocess import ImageError, load_pixels, prepare, quantize, to_float, to_model_input

SPEC = InputSpec(height=64, width=64, dtype="uint8", quantization=(0.007843129336833954, 127))
INT8 = InputSpec(height=64, width=64, dtype="int8", quantization=(0.0078125, -1))


def jpeg_bytes(img, **kw):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


def gradient(w=320, h=200):
    x = np.linspace(0, 255, w, dtype=np.float32)
    y = np.linspace(0, 255, h, dtype=np.float32)
    return np.stack([np.add.outer(y * 0, x), np.add.outer(y, x * 0), np.add.outer(y, x) / 2], -1).astype(
        np.uint8
    )


@pytest.mark.parametrize("spec", [SPEC, INT8])
def test_training_path_equals_device_path_bit_for_bit(spec):
    """Training feeds to_float(pixels); the device feeds the quantized LUT. Both from one function."""
    pixels = load_pixels(jpeg_bytes(Image.fromarray(gradient())), (64, 64)).pixels
    train = to_float(pixels, spec)
    device = to_model_input(pixels, spec)[0]
    assert device.dtype == np.dtype(spec.dtype)
    np.testing.assert_array_equal(device, quantize(train, spec.quantization, spec.dtype))
    # and the quantized value dequantizes back to the training float within half a step
    scale, zero = spec.quantization
    assert np.abs((device.astype(np.float32) - zero) * scale - train).max() <= scale / 2 + 1e-6


def test_same_pixels_from_file_bytes_array_and_image(tmp_path):
    img = Image.fromarray(gradient())
    data = jpeg_bytes(img)
    (tmp_path / "a.jpg").write_bytes(data)
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    a = load_pixels(tmp_path / "a.jpg", (64, 64)).pixels
    b = load_pixels(data, (64, 64)).pixels
    c = load_pixels(Image.open(io.BytesIO(data)), (64, 64)).pixels
    np.testing.assert_array_equal(a, b)
    # Draft (DCT-scaled) decoding of files may differ from a full decode only by JPEG rounding.
    d = load_pixels(decoded, (64, 64)).pixels
    assert np.abs(a.astype(int) - d.astype(int)).mean() < 3
    assert np.abs(c.astype(int) - d.astype(int)).mean() < 3


def test_exif_orientation_is_applied():
    arr = np.zeros((100, 200, 3), np.uint8)
    arr[:, :100] = 255  # left half white
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    p = load_pixels(jpeg_bytes(img, exif=exif), (50, 50))
    assert p.source_size == (100, 200)
    top, bottom = p.pixels[:20].mean(), p.pixels[-20:].mean()
    assert top > 200 and bottom < 50  # the white left half is now on top


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_odd_modes_become_rgb(mode):
    img = Image.fromarray(gradient()).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        img = Image.fromarray(np.asarray(img).astype(np.uint16) * 200)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    out = load_pixels(buf.getvalue(), (32, 32)).pixels
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8


def test_crop_box_selects_region():
    arr = np.zeros((400, 600, 3), np.uint8)
    arr[100:200, 300:400] = 255
    out = load_pixels(jpeg_bytes(Image.fromarray(arr)), (32, 32), box=(300, 100, 100, 100)).pixels
    assert out.mean() > 240
    with pytest.raises(ImageError, match="outside"):
        load_pixels(arr, (32, 32), box=(700, 500, 10, 10))
    with pytest.raises(ImageError, match="no area"):
        load_pixels(arr, (32, 32), box=(0, 0, 0, 10))


def test_corrupt_inputs_name_the_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    good = jpeg_bytes(Image.fromarray(gradient()))
    (tmp_path / "trunc.jpg").write_bytes(good[: len(good) // 3])
    for name in ("empty.jpg", "junk.jpg", "trunc.jpg", "missing.jpg"):
        with pytest.raises(ImageError, match=name):
            prepare(tmp_path / name, SPEC)
