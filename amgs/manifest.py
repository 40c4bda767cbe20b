"""Model manifests: the JSON file beside every ``.tflite`` that says what the model is and expects.

A manifest is the contract between the model tooling (which writes it) and everything that runs
the model (which checks it). Loading a model without a matching manifest is refused: a wrong
normalization or label order would silently produce wrong scores, which is worse than none.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amgs.contract import AU_KEYS, LABELS

MANIFEST_SCHEMA = "amgs.model-manifest/1"


class ManifestError(ValueError):
    """The model file and its manifest disagree, or the manifest is missing or malformed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: Literal[3] = 3
    layout: Literal["NHWC"] = "NHWC"
    dtype: Literal["uint8", "int8", "float32"]
    # Float the network expects = (pixel - mean) / std, pixel in 0..255 RGB.
    mean: float = 127.5
    std: float = 127.5
    # Quantization of the input tensor (scale, zero point); None for float input.
    quantization: tuple[float, int] | None = None
    resize: Literal["bilinear"] = "bilinear"


class OutputSpec(_Strict):
    name: str
    # softmax: the pain / no-pain probabilities; au_regression: five action units 0-2; features: pooled
    # features (read by the in-domain check); logits: the pain head before its softmax; centernet: detector.
    kind: Literal["softmax", "au_regression", "features", "logits", "centernet"]
    shape: tuple[int, ...]
    dtype: Literal["uint8", "int8", "float32"]
    quantization: tuple[float, int] | None = None
    labels: tuple[str, ...] | None = None  # for softmax: class order


class Evaluation(_Strict):
    dataset: str
    n_images: int
    figures: dict[str, float | int | None]
    date: str | None = None


class Array(_Strict):
    """A float32 array inside the JSON manifest (base64 of little-endian bytes): one file carries the model's
    in-domain statistics, covered by the same review and copy as the rest of the manifest."""

    shape: tuple[int, ...]
    data: str

    @classmethod
    def of(cls, a: np.ndarray) -> Array:
        a = np.ascontiguousarray(a, dtype="<f4")
        return cls(shape=a.shape, data=base64.b64encode(a.tobytes()).decode("ascii"))

    def to_numpy(self) -> np.ndarray:
        a = np.frombuffer(base64.b64decode(self.data), dtype="<f4")
        if a.size != int(np.prod(self.shape)):
            raise ManifestError(
                f"array of shape {list(self.shape)} holds {a.size} values: the manifest is damaged"
            )
        return a.reshape(self.shape).astype(np.float32)


class DomainCheck(_Strict):
    """Is an image like the faces the model was trained and validated on? (applied by amgs/domain.py)

    Score = squared Mahalanobis distance of the image's features to the nearest class mean, under one
    covariance shared by the classes (Lee et al. 2018) and estimated as probabilistic PCA (Tipping & Bishop
    1999): the top ``components`` with their ``variances``, every other direction at ``residual_variance``
    (the mean variance left over). The remainder term is what catches inputs off the faces' subspace.
    """

    method: Literal["mahalanobis"] = "mahalanobis"
    output: str = Field("features_mixed5", description="the model output (kind features) the check reads")
    class_means: Array = Field(description="per-class mean features (classes x d)")
    components: Array = Field(description="principal axes of the within-class features (k x d, orthonormal)")
    variances: Array = Field(description="variance along each principal axis (k)")
    residual_variance: float = Field(gt=0, description="variance of every direction outside the k axes")
    threshold: float = Field(gt=0, description="a score above this is out of domain")
    quantile: float = Field(gt=0, le=1, description="held-out in-domain quantile the threshold sits at")
    fitted_on: str = Field(description="images the statistics come from")
    n_fit: int = Field(gt=0)
    heldout: str = Field(description="in-domain images never trained on, that set the threshold")
    n_heldout: int = Field(gt=0)


class Calibration(_Strict):
    """Temperature scaling of the pain logit (Guo et al. 2017), fitted on held-out images.

    Calibrated P(pain) = sigmoid((logit_pain - logit_no_pain) / temperature); the 0.5 decision is unchanged.
    """

    method: Literal["temperature"] = "temperature"
    temperature: float = Field(gt=0)
    source: Literal["logits", "softmax"] = Field(
        description="logits: the model's logits output; softmax: log-odds of its (clipped) softmax output"
    )
    fitted_on: str
    n: int = Field(gt=0)
    ece_before: float | None = None
    ece_after: float | None = None


class DetectorSpec(_Strict):
    """A face detector's output layout (``kind: detector`` manifests; see ``amgs.detect``)."""

    family: Literal["centernet"] = "centernet"
    stride: int = Field(gt=0, description="input pixels per output grid cell")
    channels: tuple[str, ...] = ("heat", "off_x", "off_y", "w", "h")
    nms_iou: float = Field(0.4, gt=0, le=1)
    max_faces: int = Field(20, ge=1)
    resize: Literal["stretch_area"] = "stretch_area"


class Manifest(_Strict):
    schema_: Literal["amgs.model-manifest/1"] = Field(MANIFEST_SCHEMA, alias="schema")
    kind: Literal["scorer", "detector"] = Field(
        "scorer", description="scorer: pain/no-pain (+AU) model; detector: face boxes (threshold = min score)"
    )
    name: str
    version: str
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    architecture: str = "InceptionV3"
    quantization: Literal["full_int8", "float32", "dynamic_range"]
    input: InputSpec
    outputs: tuple[OutputSpec, ...]
    threshold: float = Field(
        0.5, ge=0, le=1, description="P(pain) at or above which an image is labelled pain"
    )
    review_threshold: float = Field(
        0.65, ge=0.5, le=1, description="top-class confidence below this -> review"
    )
    training_data: str
    synthetic: bool = Field(description="trained on synthetic faces only: not validated on real mice")
    pain_cutoff: float | None = Field(
        None,
        ge=0,
        le=2,
        description="training images labelled only by action units counted as pain at mean human MGS >= this",
    )
    edgetpu_compiled: bool = False
    evaluation: tuple[Evaluation, ...] = ()
    domain_check: DomainCheck | None = Field(
        None, description="the in-domain check; None (older models): no in-domain check, every face is scored"
    )
    calibration: Calibration | None = Field(None, description="None: P(pain) is the raw softmax")
    created: str | None = None
    notes: str | None = None
    detector: DetectorSpec | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def pain_output(self) -> OutputSpec:
        return next(o for o in self.outputs if o.kind == "softmax")

    @property
    def au_output(self) -> OutputSpec | None:
        return next((o for o in self.outputs if o.kind == "au_regression"), None)

    def output_of_kind(self, kind: str) -> OutputSpec | None:
        return next((o for o in self.outputs if o.kind == kind), None)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True, mode="json"), indent=2) + "\n"


def manifest_path_for(model_path: Path) -> Path:
    return model_path.with_suffix(".manifest.json")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(path: Path) -> Manifest:
    try:
        data: Any = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ManifestError(
            f"no manifest at {path}: every model needs one beside it (write it with `amgs model quantize`)"
        ) from None
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path} is not JSON: {e}") from None
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as e:
        raise ManifestError(f"{path} is not a valid model manifest:\n{e}") from None
    if manifest.kind == "detector":
        return _check_detector(path, manifest)
    pain = [o for o in manifest.outputs if o.kind == "softmax"]
    if len(pain) != 1:
        raise ManifestError(f"{path}: exactly one softmax (pain) output is required, found {len(pain)}")
    if pain[0].labels != LABELS:
        raise ManifestError(f"{path}: pain output labels must be {list(LABELS)}, got {pain[0].labels}")
    au = manifest.au_output
    if au is not None and au.shape[-1] != len(AU_KEYS):
        raise ManifestError(f"{path}: AU output must have {len(AU_KEYS)} values ({', '.join(AU_KEYS)})")
    check = manifest.domain_check
    if check is not None:
        _check_domain(path, manifest, check)
    if manifest.calibration and manifest.calibration.source == "logits":
        if manifest.output_of_kind("logits") is None:
            raise ManifestError(f"{path}: calibration reads logits but the manifest lists no logits output")
    return manifest


def _check_domain(path: Path, manifest: Manifest, check: DomainCheck) -> None:
    out = next((o for o in manifest.outputs if o.name == check.output), None)
    if out is None or out.kind != "features":
        raise ManifestError(
            f"{path}: the in-domain check reads output {check.output!r}, which is not a features output of the "
            "model. Re-fit it with `amgs model calibrate`."
        )
    d = out.shape[-1]
    (c, d1), (k, d2) = check.class_means.shape, check.components.shape
    if d1 != d or d2 != d or check.variances.shape != (k,) or c < 1 or k >= d:
        raise ManifestError(
            f"{path}: in-domain statistics do not fit the {check.output!r} output ({d} values): class means "
            f"{[c, d1]}, components {[k, d2]}, variances {list(check.variances.shape)}. "
            "Re-fit them with `amgs model calibrate`."
        )


def _check_detector(path: Path, manifest: Manifest) -> Manifest:
    grids = [o for o in manifest.outputs if o.kind == "centernet"]
    if manifest.detector is None or len(grids) != 1 or len(manifest.outputs) != 1:
        raise ManifestError(
            f"{path}: a detector manifest needs a 'detector' section and exactly one centernet output"
        )
    if grids[0].shape[-1] != len(manifest.detector.channels):
        raise ManifestError(
            f"{path}: detector output has {grids[0].shape[-1]} channels, the manifest names {manifest.detector.channels}"
        )
    return manifest


def verify_file(model_path: Path, manifest: Manifest) -> None:
    """Refuse a model file whose bytes are not the ones the manifest describes."""
    actual = sha256_file(model_path)
    if actual != manifest.sha256:
        raise ManifestError(
            f"{model_path} has sha256 {actual[:16]}... but its manifest says {manifest.sha256[:16]}...: "
            "the file was changed or replaced. Re-package it with `amgs model quantize`, or restore the original."
        )
