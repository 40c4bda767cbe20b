"""The int8 export is integer-only (issue 13): the face detector's file has no float tensors, no
resource-variable ops and only Edge TPU ops, and ``amgs model info`` says so.

The cause was the export, not the layers: ``keras_model.export`` calls the model without ``training``,
and a Keras 3 ``Resizing`` (its ``call`` defaults to ``training=True``) then put every layer after it into
training mode, so the BatchNormalization layers behind it were exported with batch moments and
moving-average updates (MEAN/RSQRT/SQUARED_DIFFERENCE in float, VAR_HANDLE/ASSIGN_VARIABLE/CALL_ONCE).
Tiny models (32-64 px, untrained) on purpose: what is checked is the graph, not the weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("tensorflow")


def _resize_then_bn(size: int = 32):
    """The smallest model with the detector's pattern: a ``Resizing`` with a BatchNormalization behind it."""
    import keras
    from keras import layers

    inp = keras.Input((size, size, 3))
    x = layers.Conv2D(4, 3, padding="same")(inp)
    x = layers.Resizing(size // 2, size // 2, interpolation="nearest")(x)
    x = layers.Conv2D(4, 1, use_bias=False)(x)
    bn = layers.BatchNormalization()
    x = layers.ReLU(6.0)(bn(x))
    model = keras.Model(inp, x)
    bn.moving_mean.assign(np.full(4, 0.3, np.float32))  # not the identity, so inference mode shows
    bn.moving_variance.assign(np.full(4, 2.0, np.float32))
    return model, bn


def _calibration(size: int, n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32) for _ in range(n)]


def _write(tmp_path, name: str, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_batchnorm_behind_resizing_exports_in_inference_mode(tmp_path):
    from amgs.models.package import not_integer_only, tflite_ops
    from amgs.models.quantize import convert_float, convert_int8
    from amgs.runtime import interpreter_module

    model, bn = _resize_then_bn()
    x = _calibration(32, 1)[0]
    mean_before = np.asarray(bn.moving_mean).copy()

    q = _write(tmp_path, "q.tflite", convert_int8(model, _calibration(32), "uint8"))
    assert not_integer_only(q) == ([], [])
    ops, _ = tflite_ops(q)
    assert not {"VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "CALL_ONCE", "MEAN", "RSQRT"} & set(ops)

    # The float reference computes what Keras computes in inference mode (moving statistics) ...
    f = _write(tmp_path, "f.tflite", convert_float(model))
    _, module = interpreter_module("auto")
    interp = module.Interpreter(model_path=str(f))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, np.asarray(model(x, training=False)), atol=1e-4)
    # ... and exporting did not touch the moving statistics.
    np.testing.assert_array_equal(np.asarray(bn.moving_mean), mean_before)


def test_quantized_detector_is_integer_only_and_info_says_so(tmp_path):
    from amgs.cli import main
    from amgs.detect import FaceDetector
    from amgs.models.detector_arch import build_detector
    from amgs.models.detector_data import synth_frames
    from amgs.models.detector_package import package_detector
    from amgs.models.package import tflite_ops

    size = 64
    out = tmp_path / "det.tflite"
    frames = synth_frames(3, size, seed=1)
    m = package_detector(
        build_detector(size),
        frames,
        out,
        name="tiny-det",
        version="0",
        training_data="3 synthetic frames, untrained",
        synthetic=True,
        edgetpu=False,
    )
    assert m.input.dtype == "uint8" and [o.dtype for o in m.outputs] == ["uint8"]
    ops, dtypes = tflite_ops(out)
    assert set(dtypes) <= {"uint8", "int8", "int32"}, dtypes
    assert "RESIZE_NEAREST_NEIGHBOR" in ops and not {"VAR_HANDLE", "CALL_ONCE"} & set(ops)

    r = CliRunner().invoke(main, ["model", "info", str(out), "--json"])
    assert r.exit_code == 0, r.output
    checks = {c["what"]: c for c in json.loads(r.output[r.output.index("{") :])["checks"]}
    assert checks["integer-only tensors"]["file"] == "yes" and checks["Edge TPU ops"]["file"] == "yes"
    assert all(c["ok"] for c in checks.values())

    grid = FaceDetector(out).grid(frames.images[0])
    assert grid.shape == (size // 8, size // 8, 5) and np.isfinite(grid).all()


def test_quantize_detector_refuses_a_file_that_is_not_integer_only(tmp_path, monkeypatch):
    import amgs.models.detector_package as dp
    from amgs.models.detector_data import synth_frames
    from amgs.models.quantize import convert_float

    model, _ = _resize_then_bn(32)
    monkeypatch.setattr(dp, "convert_int8", lambda keras_model, calibration, io_dtype: convert_float(model))
    out = tmp_path / "det.tflite"
    with pytest.raises(ValueError, match="not integer-only"):
        dp.package_detector(
            model,
            synth_frames(1, 32, seed=0),
            out,
            name="x",
            version="0",
            training_data="none",
            synthetic=True,
            edgetpu=False,
        )
    assert not out.exists() and not list(tmp_path.iterdir())
