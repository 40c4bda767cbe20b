"""Keras model -> deployable int8 ``.tflite`` + manifest + model card, and checking a packaged model.

Calibration images are sampled from the training set and go through amgs.preprocess (load_pixels with
the image's face box, then to_float), so the int8 ranges are measured on exactly what the device feeds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from amgs.manifest import InputSpec, Manifest, ManifestError, read_manifest, sha256_file
from amgs.models.data import labelled_items
from amgs.models.quantize import compile_edgetpu, convert_scoring_int8, describe_tflite, write_manifest
from amgs.preprocess import ImageError, load_pixels, to_float

log = logging.getLogger(__name__)


def calibration_set(
    data_root: Path, size: int, count: int = 200, seed: int = 0, pain_cutoff: float = 1.0
) -> list[np.ndarray]:
    """``count`` float inputs (1xHxWx3), balanced over pain / no pain, via the one preprocessing path."""
    items = labelled_items(Path(data_root), pain_cutoff)
    rng = np.random.default_rng(seed)
    by_class = [[it for it in items if it.label == c] for c in (0, 1)]
    chosen = []
    for group in by_class:
        take = min(len(group), max(1, count // 2))
        chosen += [group[i] for i in rng.choice(len(group), take, replace=False)] if group else []
    spec = InputSpec(height=size, width=size, dtype="float32")
    out = []
    for it in chosen:
        try:
            out.append(to_float(load_pixels(it.path, (size, size), it.box).pixels, spec)[None])
        except ImageError as e:
            log.warning("calibration image skipped: %s", e)
    if not out:
        raise ValueError(f"{data_root}: no readable calibration images")
    # One black and one white pixel make the input range exactly [-1, 1] (pixel 0..255): the uint8 input
    # tensor then represents every pixel value, so no device pixel is ever clipped by quantization.
    out[0] = out[0].copy()
    out[0][0, 0, 0, :] = to_float(np.zeros(3, np.uint8), spec)
    out[0][0, 0, 1, :] = to_float(np.full(3, 255, np.uint8), spec)
    return out


def at_size(keras_model: Any, size: int) -> Any:
    """The same network with a ``size`` x ``size`` input (InceptionV3 is fully convolutional + avg pool)."""
    if tuple(keras_model.input_shape[1:3]) == (size, size):
        return keras_model
    from amgs.models.architecture import AU_OUTPUT, build_model

    rebuilt = build_model(size, weights=None, au_heads=AU_OUTPUT in keras_model.output_names, dropout=0.2)
    rebuilt.set_weights(keras_model.get_weights())
    return rebuilt


@dataclass
class Packaged:
    model_path: Path
    manifest: Manifest
    edgetpu_path: Path | None


def package(
    keras_path: Path,
    calibration: Path,
    out: Path,
    *,
    name: str,
    version: str,
    training_data: str,
    synthetic: bool,
    size: int = 299,
    io_dtype: str = "uint8",
    calibration_count: int = 200,
    threshold: float = 0.5,
    review_threshold: float = 0.65,
    edgetpu: bool = True,
    notes: str | None = None,
    pain_cutoff: float | None = None,
) -> Packaged:
    """Quantize ``keras_path`` to full int8 at ``size``, write ``out`` and its manifest (and an Edge TPU
    build beside it when ``edgetpu_compiler`` is installed)."""
    from amgs.models.train import load_keras

    model = at_size(load_keras(Path(keras_path)), size)
    calib = calibration_set(calibration, size, calibration_count, pain_cutoff=pain_cutoff or 1.0)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tflite.tmp")
    tmp.write_bytes(convert_scoring_int8(model, calib, io_dtype))
    tmp.replace(out)
    manifest = write_manifest(
        out,
        name=name,
        version=version,
        training_data=training_data,
        synthetic=synthetic,
        threshold=threshold,
        review_threshold=review_threshold,
        notes=notes,
    )
    manifest = _record_cutoff(out, manifest, pain_cutoff)
    tpu = compile_edgetpu(out, out.parent) if edgetpu else None
    if tpu is not None:
        write_manifest(
            tpu,
            name=name,
            version=version,
            training_data=training_data,
            synthetic=synthetic,
            threshold=threshold,
            review_threshold=review_threshold,
            edgetpu_compiled=True,
            notes=notes,
        )
        _record_cutoff(tpu, read_manifest(tpu.with_suffix(".manifest.json")), pain_cutoff)
    return Packaged(out, manifest, tpu)


def _record_cutoff(model_path: Path, manifest: Manifest, pain_cutoff: float | None) -> Manifest:
    """The AU pain cut-off the training labels used goes into the manifest (None: not recorded)."""
    if pain_cutoff is None:
        return manifest
    manifest = manifest.model_copy(update={"pain_cutoff": pain_cutoff})
    model_path.with_suffix(".manifest.json").write_text(manifest.to_json())
    return manifest


# Operations the Edge TPU compiler maps (coral.ai/docs/edgetpu/models-intro, "supported operations").
EDGETPU_OPS = frozenset(
    "ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEQUANTIZE EXPAND_DIMS FULLY_CONNECTED "
    "L2_NORMALIZATION LOGISTIC LSTM MAXIMUM MAX_POOL_2D MEAN MINIMUM MUL PACK PAD PRELU QUANTIZE REDUCE_MAX "
    "REDUCE_MIN RELU RELU6 RELU_N1_TO_1 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT SLICE SOFTMAX "
    "SPACE_TO_DEPTH SPLIT SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM TANH TRANSPOSE TRANSPOSE_CONV".split()
)


def tflite_ops(model_path: Path) -> tuple[list[str], list[str]]:
    """(operator names, tensor dtypes) of a .tflite, read without any delegate rewriting the graph."""
    from amgs.runtime import interpreter_module

    name, module = interpreter_module("auto")
    kwargs: dict[str, Any] = {"model_path": str(model_path)}
    resolver = getattr(module, "OpResolverType", None) or getattr(
        getattr(module, "experimental", None), "OpResolverType", None
    )
    if resolver is not None:
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = module.Interpreter(**kwargs)
    interp.allocate_tensors()
    ops = sorted({d["op_name"] for d in interp._get_ops_details()})
    dtypes = sorted({np.dtype(t["dtype"]).name for t in interp.get_tensor_details()})
    return ops, dtypes


def not_integer_only(model_path: Path) -> tuple[list[str], list[str]]:
    """(non-integer tensor types, ops off the Edge TPU list) of a .tflite; both empty for a full-int8 file
    the Edge TPU compiler can map whole. Resource tensors (variable handles) count as non-integer."""
    ops, dtypes = tflite_ops(model_path)
    odd_types = ["resource" if d == "object" else d for d in dtypes if not d.startswith(("int", "uint"))]
    return odd_types, sorted(set(ops) - EDGETPU_OPS)


@dataclass
class Check:
    what: str
    manifest: str
    file: str

    @property
    def ok(self) -> bool:
        return self.manifest == self.file


def inspect(model_path: Path) -> tuple[Manifest, list[Check]]:
    """What the manifest says vs what the file itself says, field by field."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ManifestError(f"{model_path}: no such model file")
    manifest = read_manifest(model_path.with_suffix(".manifest.json"))
    checks = [
        Check("file name", manifest.file, model_path.name),
        Check("sha256", manifest.sha256, sha256_file(model_path)),
    ]
    try:
        spec, outputs = describe_tflite(model_path)
    except Exception as e:  # noqa: BLE001 - a broken file is a finding, not a crash
        checks.append(Check("readable as TFLite", "yes", f"no ({e})"))
        return manifest, checks
    m = manifest.input
    checks += [
        Check("input shape", f"{m.height}x{m.width}x{m.channels}", f"{spec.height}x{spec.width}x3"),
        Check("input dtype", m.dtype, spec.dtype),
        Check("input quantization", _q(m.quantization), _q(spec.quantization)),
    ]
    if manifest.quantization == "full_int8":
        floats, odd = not_integer_only(model_path)
        checks.append(
            Check("integer-only tensors", "yes", "yes" if not floats else f"no ({', '.join(floats)})")
        )
        checks.append(Check("Edge TPU ops", "yes", "yes" if not odd else f"no ({', '.join(odd)})"))
    in_file = {o.name: o for o in outputs}
    for o in manifest.outputs:
        f = in_file.get(o.name)
        checks.append(
            Check(
                f"output {o.name}",
                f"{o.dtype}{list(o.shape)} q={_q(o.quantization)}",
                f"{f.dtype}{list(f.shape)} q={_q(f.quantization)}" if f else "missing",
            )
        )
    for name in sorted(set(in_file) - {o.name for o in manifest.outputs}):
        checks.append(Check(f"output {name}", "missing", "present"))
    return manifest, checks


def _q(q: tuple[float, int] | None) -> str:
    return "none" if q is None else f"({q[0]:.6g}, {q[1]})"
