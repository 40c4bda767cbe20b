"""One small shim over the TFLite interpreters, so nothing else in the project knows which is installed.

Preference order: LiteRT (``ai_edge_litert``; ~4x faster on int8 than tflite-runtime 2.14 here),
``tflite_runtime``, then ``tensorflow.lite``. The Edge TPU is a delegate (``libedgetpu.so.1``) on top
of the same interpreter; ``accelerator="edgetpu"`` insists on it, ``"auto"`` falls back to the CPU.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from amgs.manifest import Manifest, ManifestError, read_manifest, verify_file

log = logging.getLogger(__name__)

Backend = Literal["auto", "litert", "tflite_runtime", "tensorflow"]
Accelerator = Literal["auto", "cpu", "edgetpu"]

_BACKENDS: dict[str, str] = {
    "litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
    "tensorflow": "tensorflow.lite",
}
EDGETPU_LIBRARY = "libedgetpu.so.1"


class RuntimeUnavailable(RuntimeError):
    """No interpreter (or the requested accelerator) can be loaded; the message says what to install."""


def interpreter_module(backend: Backend = "auto") -> tuple[str, Any]:
    """(name, module) of the first importable interpreter package; the module has ``Interpreter``."""
    names = list(_BACKENDS) if backend == "auto" else [backend]
    errors = []
    for name in names:
        try:
            module = importlib.import_module(_BACKENDS[name])
            if name == "tensorflow":  # the public tf.lite API object, not the tensorflow/lite source package
                module = importlib.import_module("tensorflow").lite
            return name, module
        except ImportError as e:
            errors.append(f"{_BACKENDS[name]}: {e}")
    raise RuntimeUnavailable(
        "no TFLite interpreter could be imported ("
        + "; ".join(errors)
        + "). Install one: `pip install ai-edge-litert` (preferred) or `pip install 'amgs[runtime]'`."
    )


def available_backends() -> list[str]:
    out = []
    for name, mod in _BACKENDS.items():
        try:
            importlib.import_module(mod)
            out.append(name)
        except ImportError:
            pass
    return out


def _edgetpu_delegate(module: Any) -> Any:
    load = getattr(module, "load_delegate", None) or getattr(
        getattr(module, "experimental", None), "load_delegate", None
    )
    if load is None:
        raise RuntimeUnavailable(
            "this interpreter package has no load_delegate(); use ai-edge-litert or tflite-runtime"
        )
    try:
        return load(EDGETPU_LIBRARY)
    except (ValueError, OSError, RuntimeError) as e:
        raise RuntimeUnavailable(
            f"the Edge TPU delegate {EDGETPU_LIBRARY} could not be loaded ({e}). Install the Edge TPU runtime "
            "(package libedgetpu1-std from the Coral apt repository), plug the accelerator into a USB 3 port with "
            'enough power, and use a model compiled by edgetpu_compiler. Set accelerator = "auto" to fall back to the CPU.'
        ) from None


@dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    quantization: tuple[float, int] | None


def _info(detail: dict[str, Any]) -> TensorInfo:
    scale, zero = detail.get("quantization", (0.0, 0))
    q = (float(scale), int(zero)) if scale else None
    return TensorInfo(
        detail["index"],
        detail["name"],
        tuple(int(s) for s in detail["shape"]),
        np.dtype(detail["dtype"]).name,
        q,
    )


class Model:
    """A loaded, manifest-checked model. ``run(x)`` takes one preprocessed input batch of 1."""

    def __init__(
        self,
        path: str | Path,
        *,
        num_threads: int = 1,
        backend: Backend = "auto",
        accelerator: Accelerator = "auto",
        manifest_path: str | Path | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ManifestError(f"model file {self.path} does not exist")
        self.manifest: Manifest = read_manifest(
            Path(manifest_path) if manifest_path else self.path.with_suffix(".manifest.json")
        )
        verify_file(self.path, self.manifest)
        self.backend, module = interpreter_module(backend)
        delegates = []
        self.accelerator = "cpu"
        if accelerator in ("edgetpu", "auto") and self.manifest.edgetpu_compiled:
            try:
                delegates = [_edgetpu_delegate(module)]
                self.accelerator = "edgetpu"
            except RuntimeUnavailable:
                if accelerator == "edgetpu":
                    raise
                log.warning("Edge TPU not available; running %s on the CPU", self.path.name)
        elif accelerator == "edgetpu":
            raise RuntimeUnavailable(
                f'accelerator = "edgetpu" but {self.path.name} is not compiled for the Edge TPU '
                "(its manifest says edgetpu_compiled = false). Compile it with `amgs model quantize --edgetpu`."
            )
        kwargs: dict[str, Any] = {"model_path": str(self.path), "num_threads": num_threads}
        if delegates:
            kwargs["experimental_delegates"] = delegates
        self._interp = module.Interpreter(**kwargs)
        self._interp.allocate_tensors()
        self.input = _info(self._interp.get_input_details()[0])
        self.outputs = self._match_outputs()
        self._check_input()
        self.last_invoke_ms = 0.0

    def _match_outputs(self) -> dict[str, TensorInfo]:
        """Map manifest output names to tensors through the model's serving signature."""
        details = {d["name"]: _info(d) for d in self._interp.get_output_details()}
        by_name: dict[str, TensorInfo] = {}
        index_to_name = {info.index: n for n, info in details.items()}
        sig_outputs: dict[str, str] = {}
        if self._interp.get_signature_list():
            runner = self._interp.get_signature_runner()
            for name, detail in runner.get_output_details().items():
                if detail["index"] in index_to_name:
                    sig_outputs[name] = index_to_name[detail["index"]]
        for spec in self.manifest.outputs:
            tensor_name = sig_outputs.get(spec.name, spec.name)
            info = details.get(tensor_name)
            if info is None:
                raise ManifestError(
                    f"{self.path.name}: manifest output {spec.name!r} is not an output of the model "
                    f"(model outputs: {sorted(sig_outputs or details)})"
                )
            if info.shape != tuple(spec.shape) or info.dtype != spec.dtype:
                raise ManifestError(
                    f"{self.path.name}: output {spec.name!r} is {info.dtype}{list(info.shape)} in the file "
                    f"but {spec.dtype}{list(spec.shape)} in the manifest"
                )
            by_name[spec.name] = info
        return by_name

    def _check_input(self) -> None:
        spec = self.manifest.input
        want = (1, spec.height, spec.width, spec.channels)
        if self.input.shape != want or self.input.dtype != spec.dtype:
            raise ManifestError(
                f"{self.path.name}: input tensor is {self.input.dtype}{list(self.input.shape)} in the file "
                f"but {spec.dtype}{list(want)} in the manifest"
            )
        if spec.quantization is not None and self.input.quantization is not None:
            scale, zero = self.input.quantization
            if (
                abs(scale - spec.quantization[0]) > 1e-6 * max(1.0, abs(scale))
                or zero != spec.quantization[1]
            ):
                raise ManifestError(
                    f"{self.path.name}: input quantization is {self.input.quantization} in the file "
                    f"but {spec.quantization} in the manifest"
                )

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) the preprocessing must produce."""
        return self.manifest.input.width, self.manifest.input.height

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Invoke on one input (HxWxC or 1xHxWxC, already in the input dtype); outputs dequantized to float."""
        if x.ndim == 3:
            x = x[None]
        self._interp.set_tensor(self.input.index, x)
        t0 = time.perf_counter()
        self._interp.invoke()
        self.last_invoke_ms = (time.perf_counter() - t0) * 1000
        out = {}
        for name, info in self.outputs.items():
            raw = self._interp.get_tensor(info.index)[0]
            if info.quantization is not None:
                scale, zero = info.quantization
                out[name] = (raw.astype(np.float32) - zero) * scale
            else:
                out[name] = raw.astype(np.float32)
        return out
