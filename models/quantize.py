"""Full-integer int8 quantization and packaging: Keras model -> ``.tflite`` + manifest.

Besides ``pain`` (and ``au``) every converted model exposes ``features`` (pooled penultimate features) and
``logits`` (the pain head before its softmax), read by the in-domain check and the calibration
(:mod:`amgs.models.expose`).

Calibration images go through the one preprocessing path (``amgs.preprocess``; see
``amgs.models.package.calibration_set``), so the int8 ranges are measured on exactly the pixels the
device will feed. Ops stay within TFLITE_BUILTINS_INT8, which
the Edge TPU compiler accepts for InceptionV3; ``edgetpu_compiler`` is run when it is installed.

Every conversion starts from :func:`export_inference`, which traces the model with ``training=False``
passed explicitly. ``keras_model.export`` calls the model without a ``training`` argument, and Keras 3
then lets a layer whose ``call`` defaults to ``training=True`` (the image preprocessing layers, e.g. the
detector's ``Resizing``) set training mode for every layer run after it in the same call: the
BatchNormalization layers behind it were exported in training mode (batch moments, moving-average
updates), which the converter kept as float ops and resource variables (issue 13, docs/models.md).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from amgs.contract import LABELS
from amgs.manifest import Evaluation, InputSpec, Manifest, OutputSpec, sha256_file

log = logging.getLogger(__name__)


def export_inference(keras_model: Any, path: str | Path) -> None:
    """Write ``keras_model``'s inference forward pass as a SavedModel (endpoint ``serve``, the signature
    names ``keras_model.export`` gives), traced with ``training=False`` passed explicitly.

    Not ``keras_model.export``: it calls the model with no ``training`` argument, and in Keras 3 a layer
    whose ``call`` defaults to ``training=True`` (``Resizing`` and the other image preprocessing layers)
    then puts every layer after it in that call into training mode, so BatchNormalization would be
    exported with batch statistics and moving-average updates (float ops and VAR_HANDLE/ASSIGN_VARIABLE/
    CALL_ONCE in the converted file). Training is untouched: it always passes ``training`` itself.
    """
    import keras

    if len(keras_model.inputs) != 1:
        raise ValueError(f"{keras_model.name}: one input expected, got {len(keras_model.inputs)}")
    inp = keras_model.inputs[0]
    spec = keras.InputSpec(shape=(None, *inp.shape[1:]), dtype=inp.dtype, name=inp.name)
    archive = keras.export.ExportArchive()
    archive.track(keras_model)
    archive.add_endpoint("serve", lambda x: keras_model(x, training=False), input_signature=[spec])
    archive.write_out(str(path), verbose=False)


def convert_int8(keras_model: Any, calibration: list[np.ndarray], io_dtype: str = "uint8") -> bytes:
    """Keras model -> full-integer TFLite bytes (uint8 or int8 input and outputs), as converted."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        export_inference(keras_model, tmp)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]

        def representative():
            for x in calibration:
                yield [x.astype(np.float32)]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8 if io_dtype == "uint8" else tf.int8
        converter.inference_output_type = tf.uint8 if io_dtype == "uint8" else tf.int8
        return converter.convert()


def convert_scoring_int8(keras_model: Any, calibration: list[np.ndarray], io_dtype: str = "uint8") -> bytes:
    """A scoring model converted to int8, with the pooled features and the pain logits exposed as outputs
    too (for the in-domain check and calibration)."""
    from amgs.models.expose import expose_outputs

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.tflite", Path(tmp) / "out.tflite"
        src.write_bytes(convert_int8(keras_model, calibration, io_dtype))
        expose_outputs(src, dst)
        return dst.read_bytes()


def convert_float(keras_model: Any) -> bytes:
    """Keras model -> float32 TFLite bytes (the reference the int8 model is compared with)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        export_inference(keras_model, tmp)
        return tf.lite.TFLiteConverter.from_saved_model(tmp).convert()


def describe_tflite(path: Path) -> tuple[InputSpec, tuple[OutputSpec, ...]]:
    """Read input/output tensors of a .tflite file into manifest specs (names from its signature)."""
    from amgs.runtime import interpreter_module

    _, module = interpreter_module("auto")
    interp = module.Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    scale, zero = inp["quantization"]
    dtype = np.dtype(inp["dtype"]).name
    input_spec = InputSpec(
        height=int(inp["shape"][1]),
        width=int(inp["shape"][2]),
        dtype=dtype,
        quantization=(float(scale), int(zero)) if scale else None,
    )
    runner = interp.get_signature_runner()
    outputs = []
    for name, d in sorted(runner.get_output_details().items()):
        s, z = d["quantization"]
        kind = output_kind(name, int(d["shape"][-1]))
        outputs.append(
            OutputSpec(
                name=name,
                kind=kind,
                shape=tuple(int(v) for v in d["shape"]),
                dtype=np.dtype(d["dtype"]).name,
                quantization=(float(s), int(z)) if s else None,
                labels=LABELS if kind in ("softmax", "logits") else None,
            )
        )
    return input_spec, tuple(outputs)


def output_kind(name: str, width: int) -> str:
    """Manifest kind of a signature output: by name for the exposed ones, else by width (2: the softmax)."""
    from amgs.models.expose import FEATURES_OUTPUT, LOGITS_OUTPUT, MID_OUTPUT

    if name in (FEATURES_OUTPUT, MID_OUTPUT):
        return "features"
    if name == LOGITS_OUTPUT:
        return "logits"
    return "softmax" if width == 2 else "au_regression"


def write_manifest(
    model_path: Path,
    *,
    name: str,
    version: str,
    training_data: str,
    synthetic: bool,
    quantization: str = "full_int8",
    threshold: float = 0.5,
    review_threshold: float = 0.65,
    evaluation: tuple[Evaluation, ...] = (),
    edgetpu_compiled: bool = False,
    notes: str | None = None,
) -> Manifest:
    """Describe ``model_path`` in a fresh manifest beside it (no in-domain check, no calibration yet:
    :func:`amgs.models.calibrate.calibrate` adds them)."""
    input_spec, outputs = describe_tflite(model_path)
    manifest = Manifest(
        schema="amgs.model-manifest/1",
        name=name,
        version=version,
        file=model_path.name,
        sha256=sha256_file(model_path),
        quantization=quantization,
        input=input_spec,
        outputs=outputs,
        threshold=threshold,
        review_threshold=review_threshold,
        training_data=training_data,
        synthetic=synthetic,
        edgetpu_compiled=edgetpu_compiled,
        evaluation=evaluation,
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        notes=notes,
    )
    model_path.with_suffix(".manifest.json").write_text(manifest.to_json())
    return manifest


def compile_edgetpu(model_path: Path, out_dir: Path) -> Path | None:
    """Run edgetpu_compiler when installed; return the compiled file, or None (and say why)."""
    exe = shutil.which("edgetpu_compiler")
    if exe is None:
        log.warning(
            "edgetpu_compiler is not installed (it is x86-64 Linux only, from the Coral apt repository): "
            "the model was written for the CPU only"
        )
        return None
    subprocess.run([exe, "-s", "-o", str(out_dir), str(model_path)], check=True)
    compiled = out_dir / (model_path.stem + "_edgetpu.tflite")
    return compiled if compiled.exists() else None
