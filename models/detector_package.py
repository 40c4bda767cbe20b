"""Face detector: Keras model -> full int8 ``.tflite`` + a ``kind: detector`` manifest.

Calibration frames come from the detector's own training frames, already at input size through
``amgs.detect.detector_pixels`` (the resize every caller uses), normalised exactly as the scorer's
input: (pixel - 127.5) / 127.5. One frame gets a black and a white pixel so the uint8 input tensor
covers every pixel value (scale 2/255), as in ``amgs.models.package``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from amgs.manifest import DetectorSpec, Evaluation, Manifest, sha256_file
from amgs.models.detector_data import DetectorSet
from amgs.models.package import not_integer_only
from amgs.models.quantize import compile_edgetpu, convert_int8, describe_tflite

ARCHITECTURE = "MobileNetV2 (alpha 0.35) + CenterNet head, stride 8"


def detector_calibration(ds: DetectorSet, count: int = 200, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(ds), min(count, len(ds)), replace=False)
    out = [((ds.images[i].astype(np.float32) - 127.5) / 127.5)[None] for i in idx]
    out[0] = out[0].copy()
    out[0][0, 0, 0, :] = -1.0
    out[0][0, 0, 1, :] = 1.0
    return out


def write_detector_manifest(
    model_path: Path,
    *,
    name: str,
    version: str,
    training_data: str,
    synthetic: bool,
    threshold: float,
    stride: int,
    evaluation: tuple[Evaluation, ...] = (),
    edgetpu_compiled: bool = False,
    notes: str | None = None,
) -> Manifest:
    input_spec, outputs = describe_tflite(model_path)
    outputs = tuple(o.model_copy(update={"kind": "centernet", "labels": None}) for o in outputs)
    manifest = Manifest(
        schema="amgs.model-manifest/1",
        kind="detector",
        name=name,
        version=version,
        file=model_path.name,
        sha256=sha256_file(model_path),
        architecture=ARCHITECTURE,
        quantization="full_int8",
        input=input_spec,
        outputs=outputs,
        threshold=threshold,
        training_data=training_data,
        synthetic=synthetic,
        edgetpu_compiled=edgetpu_compiled,
        evaluation=evaluation,
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        notes=notes,
        detector=DetectorSpec(stride=stride),
    )
    model_path.with_suffix(".manifest.json").write_text(manifest.to_json())
    return manifest


def package_detector(
    keras_model: Any,
    calibration: DetectorSet,
    out: Path,
    *,
    name: str,
    version: str,
    training_data: str,
    synthetic: bool,
    threshold: float = 0.3,
    calibration_count: int = 200,
    edgetpu: bool = True,
    notes: str | None = None,
) -> Manifest:
    """Quantize to full int8 (uint8 I/O), write ``out`` + manifest (+ an Edge TPU build when possible)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = int(keras_model.input_shape[1])
    grid = int(keras_model.output_shape[1])
    tmp = out.with_suffix(".tflite.tmp")
    tmp.write_bytes(convert_int8(keras_model, detector_calibration(calibration, calibration_count), "uint8"))
    odd_types, odd_ops = not_integer_only(tmp)
    if odd_types or odd_ops:
        tmp.unlink()
        raise ValueError(
            f"{out}: the converted detector is not integer-only (tensor types {odd_types or 'ok'}, ops off "
            f"the Edge TPU list {odd_ops or 'none'}); not written (docs/models.md, the face detector)"
        )
    tmp.replace(out)
    kwargs = dict(
        name=name,
        version=version,
        training_data=training_data,
        synthetic=synthetic,
        threshold=threshold,
        stride=size // grid,
        notes=notes,
    )
    manifest = write_detector_manifest(out, **kwargs)  # type: ignore[arg-type]
    tpu = compile_edgetpu(out, out.parent) if edgetpu else None
    if tpu is not None:
        write_detector_manifest(tpu, edgetpu_compiled=True, **kwargs)  # type: ignore[arg-type]
    return manifest
