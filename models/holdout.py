"""The held-out test at the end of ``amgs model train``: the trained float model on the test part of the
split (animals it never saw, when animal ids are known), written as the same report ``amgs model evaluate``
writes (``RUN/test/report.md``, plots, ``predictions.csv``, ``figures.json``).

These are the float model's figures; the int8 model a device runs is checked again by ``amgs model
evaluate`` after quantization (it reports float vs int8 agreement with ``--float-model``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from amgs.contract import LABELS
from amgs.manifest import InputSpec, Manifest, OutputSpec, sha256_file
from amgs.models.architecture import AU_OUTPUT, PAIN_OUTPUT
from amgs.models.data import ArraySet


def _generator_truth(data_root: Path, paths: np.ndarray) -> np.ndarray | None:
    from amgs.models.evaluate import _generator_truth as truth_of

    truth = truth_of(data_root)
    return np.array([truth.get(str(p), np.nan) for p in paths]) if truth else None


def float_manifest(
    model_path: Path, size: int, au: bool, data_root: Path, threshold: float = 0.5
) -> Manifest:
    """A manifest describing the float Keras model (what the report header needs)."""
    outputs = [OutputSpec(name=PAIN_OUTPUT, kind="softmax", shape=(1, 2), dtype="float32", labels=LABELS)]
    if au:
        outputs.append(OutputSpec(name=AU_OUTPUT, kind="au_regression", shape=(1, 5), dtype="float32"))
    return Manifest(
        name=model_path.parent.name,
        version="float (not yet quantized)",
        file=model_path.name,
        sha256=sha256_file(model_path),
        quantization="float32",
        input=InputSpec(height=size, width=size, dtype="float32"),
        outputs=tuple(outputs),
        threshold=threshold,
        training_data=str(data_root),
        synthetic=(Path(data_root) / "truth.csv").exists(),
    )


def evaluate_holdout(
    model: Any,
    model_path: Path,
    test: ArraySet,
    data_root: Path,
    out_dir: Path,
    *,
    size: int,
    split_by: str,
    batch_size: int = 32,
) -> tuple[Path, dict[str, Any]]:
    """Score ``test`` with the trained Keras ``model``; write the report into ``out_dir``."""
    from amgs.models import metrics
    from amgs.models.evaluate import Predictions, _write_predictions, figures
    from amgs.models.report import write_report
    from amgs.models.train import predict_arrays

    out = predict_arrays(model, test.pixels, size, batch_size)
    p = out[PAIN_OUTPUT][:, 1].astype(np.float64)
    pred = Predictions(
        paths=[str(x) for x in test.paths],
        labels=test.labels,
        animals=test.animals,
        human_mgs=test.mgs.astype(np.float64),
        p_int8=p,  # the float model's P(pain): the report's figures are computed from this column
        au_int8=out[AU_OUTPUT].astype(np.float64) if AU_OUTPUT in out else None,
        generator_mgs=_generator_truth(data_root, test.paths),
    )
    manifest = float_manifest(model_path, size, AU_OUTPUT in out, data_root)
    figs = figures(pred, manifest.threshold)
    animals = metrics.per_animal(pred.animals, pred.p_int8, pred.labels, pred.human_mgs, manifest.threshold)
    out_dir.mkdir(parents=True, exist_ok=True)
    report, _ = write_report(
        out_dir, manifest, pred, figs, animals, f"{Path(data_root).name} (held-out test part)"
    )
    held = (
        "animals never seen in training or validation"
        if split_by == "animal"
        else "whole animals where an id is known, single images otherwise"
        if split_by == "animal+image"
        else "single images (NO animal ids: the same mice may be in training; this does not measure unseen animals)"
    )
    text = report.read_text().split("\n")
    text[1:1] = [
        "",
        f"Held out at the end of `amgs model train`: {len(test)} test images, {held} "
        "(list: `../test_images.txt`). Figures are the FLOAT Keras model's; quantize, then check the int8 "
        "model with `amgs model evaluate MODEL.tflite DATA --float-model model.keras`.",
    ]
    report.write_text("\n".join(text))
    _write_predictions(out_dir / "predictions.csv", pred)
    (out_dir / "figures.json").write_text(json.dumps(figs, indent=2) + "\n")
    return report, figs
