"""``amgs model evaluate``: score a labelled set with a deployable model and say how good it is.

The int8 (deployed) model scores every image through the one preprocessing path (amgs.preprocess, via
amgs.scoring.Scorer), exactly as the device would. An optional float reference (the Keras model it was
quantized from, or a float ``.tflite``) scores the same pixels, to measure what quantization cost.
Figures: see :mod:`amgs.models.metrics`; the report is markdown with PNG plots (matplotlib, Agg backend).

Every image gets the outcome a user would see (pain, no pain, or unscorable with a reason). The classic
figures cover every image (comparable with earlier reports); ``scorable_*`` figures cover the images the
model would actually score. ``p_int8`` is P(pain) as scored (calibrated when the manifest has a temperature);
``ece_uncalibrated`` is the raw softmax's, beside ``ece``. With ``controls`` the same model also scores
control images that are no mouse face at all (:mod:`amgs.models.controls`); every one should be unscorable.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from amgs.contract import AU_KEYS
from amgs.manifest import Evaluation, Manifest, manifest_path_for, read_manifest
from amgs.models import metrics
from amgs.models.data import labelled_items
from amgs.preprocess import load_pixels, to_float
from amgs.runtime import Model
from amgs.scoring import OUT_OF_DOMAIN, QUALITY, UNSCORABLE, ImageScore, Scorer


@dataclass
class Predictions:
    paths: list[str]
    labels: np.ndarray
    animals: np.ndarray
    human_mgs: np.ndarray  # NaN where unscored
    p_int8: np.ndarray
    au_int8: np.ndarray | None
    p_float: np.ndarray | None = None
    generator_mgs: np.ndarray | None = None  # synthetic sets only (truth.csv)
    unreadable: list[str] = field(default_factory=list)
    p_raw: np.ndarray | None = None  # the uncalibrated softmax P(pain)
    outcome: np.ndarray | None = None  # str per image: pain / no pain / unscorable
    reason: np.ndarray | None = None  # str per image: unscorable reason, "" when scorable
    domain_distance: np.ndarray | None = None  # NaN when the model has no in-domain check

    @property
    def scorable(self) -> np.ndarray:
        return np.ones(len(self.paths), bool) if self.outcome is None else self.outcome != UNSCORABLE


class FloatReference:
    """A float model scoring uint8 pixels normalized by amgs.preprocess.to_float (Keras or float .tflite)."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = Path(path)
        self.spec = manifest.input.model_copy(update={"dtype": "float32", "quantization": None})
        if self.path.suffix == ".keras" or self.path.name.endswith(".weights.h5"):
            from amgs.models.train import load_keras

            self._keras = load_keras(self.path)
            self._interp = None
        elif self.path.suffix == ".tflite":
            from amgs.runtime import interpreter_module

            _, module = interpreter_module("auto")
            self._keras = None
            self._interp = module.Interpreter(model_path=str(self.path))
            self._interp.allocate_tensors()
            self._runner = self._interp.get_signature_runner()
            self._input_name = next(iter(self._runner.get_input_details()))
        else:
            raise ValueError(f"{path}: a float reference must be a .keras model or a float .tflite")

    def p_pain(self, pixels: np.ndarray) -> np.ndarray:
        """P(pain) for a batch (N x H x W x 3 uint8)."""
        x = to_float(pixels, self.spec)
        if self._keras is not None:
            probs = np.asarray(self._keras(x, training=False)["pain"], dtype=np.float64)
        else:
            probs = np.concatenate(
                [np.asarray(self._runner(**{self._input_name: x[i : i + 1]})["pain"]) for i in range(len(x))]
            ).astype(np.float64)
        return probs[:, 1] / probs.sum(axis=1)


def _generator_truth(root: Path) -> dict[str, float]:
    """The synthetic generator's exact mean action unit per image (only synthetic sets have truth.csv)."""
    path = root / "truth.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {
            row["filename"]: float(np.mean([float(row[k]) for k in AU_KEYS])) for row in csv.DictReader(f)
        }


def predict(
    model_path: Path,
    data_root: Path,
    float_model: Path | None = None,
    progress: bool = False,
    threads: int = 1,
    pain_cutoff: float | None = None,
    only: set[str] | None = None,
) -> Predictions:
    model = Model(model_path, num_threads=threads)
    scorer = Scorer(model)
    spec = model.manifest.input
    reference = FloatReference(float_model, model.manifest) if float_model else None
    truth = _generator_truth(Path(data_root))
    # AU-only labels: the cut-off the model was trained with (manifest), unless given
    cutoff = pain_cutoff if pain_cutoff is not None else (model.manifest.pain_cutoff or 1.0)
    items = labelled_items(Path(data_root), cutoff)
    if only is not None:  # e.g. the test part a training run kept (RUN/test_images.txt)
        items = [it for it in items if str(it.path.relative_to(data_root)) in only]
        if not items:
            raise ValueError(f"{data_root}: none of the listed images is there")
    iterator: Any = items
    if progress:
        from tqdm import tqdm

        iterator = tqdm(items, desc="evaluating", unit="img")
    paths, labels, animals, human, p8, au8, pf, gen, bad = [], [], [], [], [], [], [], [], []
    raw, outcome, reason, dist = [], [], [], []
    pending: list[np.ndarray] = []  # pixels waiting for the float reference (scored in batches)
    for it in iterator:
        try:
            pixels = load_pixels(it.path, (spec.width, spec.height), it.box).pixels
        except ValueError as e:
            bad.append(str(e))
            continue
        s = scorer.score_pixels(pixels)
        raw.append(scorer.last_raw_p_pain)
        outcome.append(s.outcome)
        reason.append(s.unscorable_reason or "")
        dist.append(np.nan if s.domain_distance is None else s.domain_distance)
        rel = str(it.path.relative_to(data_root))
        paths.append(rel)
        labels.append(int(it.label))  # type: ignore[arg-type]
        animals.append(it.animal_id or "")
        human.append(it.au.mgs if it.au else np.nan)
        p8.append(s.p_pain)
        if s.au is not None:
            au8.append([s.au[k] for k in AU_KEYS])
        if reference is not None:
            pending.append(pixels)
            if len(pending) == 32:
                pf.extend(reference.p_pain(np.stack(pending)))
                pending.clear()
        gen.append(truth.get(rel, np.nan))
    if reference is not None and pending:
        pf.extend(reference.p_pain(np.stack(pending)))
    if not paths:
        raise ValueError(f"{data_root}: none of the labelled images could be read ({len(bad)} unreadable)")
    return Predictions(
        paths=paths,
        labels=np.array(labels),
        animals=np.array(animals, dtype=str),
        human_mgs=np.array(human, dtype=np.float64),
        p_int8=np.array(p8),
        au_int8=np.array(au8) if len(au8) == len(paths) else None,
        p_float=np.array(pf) if reference is not None else None,
        generator_mgs=np.array(gen) if truth else None,
        unreadable=bad,
        p_raw=np.array(raw),
        outcome=np.array(outcome, dtype=object),
        reason=np.array(reason, dtype=object),
        domain_distance=np.array(dist, dtype=np.float64),
    )


def _r(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def figures(pred: Predictions, threshold: float) -> dict[str, float | int | None]:
    """The headline numbers (what goes into the manifest's ``evaluation``)."""
    c = metrics.confusion(pred.labels, pred.p_int8, threshold)
    rel = metrics.reliability(pred.labels, pred.p_int8)
    out: dict[str, float | int | None] = {
        "accuracy": _r(c.accuracy),
        "sensitivity": _r(c.sensitivity),
        "specificity": _r(c.specificity),
        "roc_auc": _r(metrics.roc_auc(pred.labels, pred.p_int8)),
        "tp": c.tp,
        "fp": c.fp,
        "tn": c.tn,
        "fn": c.fn,
        "ece": _r(rel.ece),
    }
    if np.isfinite(pred.human_mgs).sum() >= 3:
        out["pearson_r_amgs_vs_human_mgs"] = _r(metrics.pearson_r(pred.p_int8, pred.human_mgs))
        out["icc_amgs_vs_human_mgs"] = _r(metrics.icc(2 * pred.p_int8, pred.human_mgs, "consistency"))
        if pred.au_int8 is not None:
            mgs_au = pred.au_int8.mean(axis=1)
            out["pearson_r_au_vs_human_mgs"] = _r(metrics.pearson_r(mgs_au, pred.human_mgs))
            out["icc_au_vs_human_mgs"] = _r(metrics.icc(mgs_au, pred.human_mgs, "agreement"))
    if pred.generator_mgs is not None:
        out["pearson_r_amgs_vs_generator_mgs"] = _r(metrics.pearson_r(pred.p_int8, pred.generator_mgs))
        if pred.au_int8 is not None:
            out["pearson_r_au_vs_generator_mgs"] = _r(
                metrics.pearson_r(pred.au_int8.mean(axis=1), pred.generator_mgs)
            )
    animals = metrics.per_animal(pred.animals, pred.p_int8, pred.labels, pred.human_mgs, threshold)
    out["n_animals"] = len(animals)
    human = [a["mean_human_mgs"] for a in animals]
    if len(animals) >= 3 and all(h is not None for h in human):
        out["pearson_r_animal_amgs_vs_human_mgs"] = _r(
            metrics.pearson_r(np.array([a["mean_amgs"] for a in animals]), np.array(human, dtype=float))
        )
    if pred.p_float is not None:
        # like with like: the float model is uncalibrated, so it is compared with the raw int8 softmax
        a = metrics.agreement(pred.p_float, pred.p_raw if pred.p_raw is not None else pred.p_int8, threshold)
        out["float_int8_identical_decisions"] = _r(a.identical_decisions)
        out["float_int8_mean_abs_dp"] = _r(a.mean_abs_dp)
        out["float_int8_max_abs_dp"] = _r(a.max_abs_dp)
        out["float_accuracy"] = _r(metrics.confusion(pred.labels, pred.p_float, threshold).accuracy)
    out.update(unscorable_figures(pred, threshold))
    return out


def unscorable_figures(pred: Predictions, threshold: float) -> dict[str, float | int | None]:
    """How many images the model would not score, and the classic figures on the ones it would."""
    out: dict[str, float | int | None] = {}
    if pred.p_raw is not None:
        out["ece_uncalibrated"] = _r(metrics.reliability(pred.labels, pred.p_raw).ece)
    if pred.outcome is None:
        return out
    ok = pred.scorable
    out["n_unscorable"] = int((~ok).sum())
    out["unscorable_fraction"] = _r(float((~ok).mean()))
    out["n_out_of_domain"] = int((pred.reason == OUT_OF_DOMAIN).sum())
    out["n_quality"] = int((pred.reason == QUALITY).sum())
    if ok.sum() == 0:
        return out
    labels, p = pred.labels[ok], pred.p_int8[ok]
    c = metrics.confusion(labels, p, threshold)
    out["scorable_accuracy"] = _r(c.accuracy)
    out["scorable_sensitivity"] = _r(c.sensitivity)
    out["scorable_specificity"] = _r(c.specificity)
    out["scorable_roc_auc"] = _r(metrics.roc_auc(labels, p))
    if pred.generator_mgs is not None and pred.au_int8 is not None and ok.sum() >= 3:
        out["scorable_pearson_r_au_vs_generator_mgs"] = _r(
            metrics.pearson_r(pred.au_int8[ok].mean(axis=1), pred.generator_mgs[ok])
        )
    if np.isfinite(pred.human_mgs[ok]).sum() >= 3 and pred.au_int8 is not None:
        out["scorable_pearson_r_au_vs_human_mgs"] = _r(
            metrics.pearson_r(pred.au_int8[ok].mean(axis=1), pred.human_mgs[ok])
        )
    return out


def score_controls(scorer: Scorer, n_per_kind: int, seed: int) -> dict[str, list[ImageScore]]:
    """Score :mod:`amgs.models.controls` images (no mouse face at all), grouped by kind."""
    from amgs.models.controls import make_controls
    from amgs.preprocess import load_pixels

    spec = scorer.manifest.input
    by_kind: dict[str, list[ImageScore]] = {}
    for c in make_controls(n_per_kind, seed=seed, size=spec.width):
        pixels = load_pixels(c.pixels, (spec.width, spec.height)).pixels
        by_kind.setdefault(c.kind, []).append(scorer.score_pixels(pixels))
    return by_kind


def control_figures(by_kind: dict[str, list[ImageScore]]) -> dict[str, float | int | None]:
    """Share of control images unscorable: overall, by the in-domain check alone, and per kind."""
    every = [s for group in by_kind.values() for s in group]
    out: dict[str, float | int | None] = {
        "controls_n": len(every),
        "controls_unscorable_fraction": _r(float(np.mean([not s.scorable for s in every]))),
        "controls_out_of_domain_fraction": _r(
            float(
                np.mean(
                    [s.domain_distance is not None and s.unscorable_reason == OUT_OF_DOMAIN for s in every]
                )
            )
        ),
    }
    for kind, group in by_kind.items():
        out[f"controls_unscorable_{kind}"] = _r(float(np.mean([not s.scorable for s in group])))
    return out


def record_in_manifest(model_path: Path, evaluation: Evaluation) -> Manifest:
    """Add (or replace, for the same dataset name) an evaluation in the model's manifest."""
    mpath = manifest_path_for(model_path)
    manifest = read_manifest(mpath)
    kept = tuple(e for e in manifest.evaluation if e.dataset != evaluation.dataset)
    updated = manifest.model_copy(update={"evaluation": (*kept, evaluation)})
    mpath.write_text(updated.to_json())
    return updated


def check_recordable(manifest_path: Path) -> None:
    """Refuse to write figures into a manifest inside an installed package (site-packages) or one this user
    cannot write: record them in a copy of the model, or in the collector's model registry."""
    import os
    import site
    import sysconfig

    installed = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")} | set(site.getsitepackages())
    from amgs.models import DEFAULT_MODEL

    where = Path(manifest_path).resolve()
    if where == manifest_path_for(DEFAULT_MODEL).resolve():
        raise ValueError(
            f"--record: {manifest_path} is the shipped model's manifest; copy the model and its manifest "
            "elsewhere first (the shipped figures stay as released)"
        )
    for root in installed:
        if where.is_relative_to(Path(root).resolve()):
            raise ValueError(
                f"--record: {manifest_path} is inside an installed package ({root}); copy the model and its "
                "manifest elsewhere first, or keep the figures in report/figures.json"
            )
    if not os.access(where, os.W_OK):
        raise ValueError(f"--record: cannot write {manifest_path}")


@dataclass
class EvaluationResult:
    figures: dict[str, float | int | None]
    report: Path
    plots: list[Path]
    per_animal: list[dict[str, Any]]
    n_images: int
    n_unreadable: int


def evaluate(
    model_path: Path,
    data_root: Path,
    out_dir: Path,
    *,
    float_model: Path | None = None,
    dataset_name: str | None = None,
    write_manifest: bool = False,
    progress: bool = False,
    threads: int = 1,
    pain_cutoff: float | None = None,
    only: set[str] | None = None,
    controls: int = 0,
    controls_seed: int = 2,
) -> EvaluationResult:
    """Figures, report and (unless ``write_manifest`` is False) the manifest entry; ``controls`` > 0 also
    scores that many control images per kind (seed ``controls_seed``) and adds ``controls_*`` figures."""
    from amgs.models.report import write_report

    model_path, data_root, out_dir = Path(model_path), Path(data_root), Path(out_dir)
    manifest = read_manifest(manifest_path_for(model_path))
    if write_manifest:
        check_recordable(manifest_path_for(model_path))
    pred = predict(model_path, data_root, float_model, progress, threads, pain_cutoff, only)
    figs = figures(pred, manifest.threshold)
    if controls:
        scorer = Scorer(Model(model_path, num_threads=threads))
        figs.update(control_figures(score_controls(scorer, controls, controls_seed)))
    animals = metrics.per_animal(pred.animals, pred.p_int8, pred.labels, pred.human_mgs, manifest.threshold)
    out_dir.mkdir(parents=True, exist_ok=True)
    report, plots = write_report(out_dir, manifest, pred, figs, animals, dataset_name or data_root.name)
    _write_predictions(out_dir / "predictions.csv", pred)
    (out_dir / "figures.json").write_text(json.dumps(figs, indent=2) + "\n")
    if write_manifest:
        record_in_manifest(
            model_path,
            Evaluation(
                dataset=dataset_name or data_root.name,
                n_images=len(pred.paths),
                figures=figs,
                date=datetime.now(UTC).strftime("%Y-%m-%d"),
            ),
        )
    return EvaluationResult(figs, report, plots, animals, len(pred.paths), len(pred.unreadable))


def _write_predictions(path: Path, pred: Predictions) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        header = [
            "path",
            "animal_id",
            "label",
            "outcome",
            "unscorable_reason",
            "domain_distance",
            "human_mgs",
        ]
        header += ["p_pain_int8", "p_pain_uncalibrated"]
        header += [f"au_{k}" for k in AU_KEYS] if pred.au_int8 is not None else []
        header += ["p_pain_float"] if pred.p_float is not None else []
        w.writerow(header)
        for i, p in enumerate(pred.paths):
            row: list[Any] = [
                p,
                pred.animals[i],
                int(pred.labels[i]),
                pred.outcome[i] if pred.outcome is not None else "",
                pred.reason[i] if pred.reason is not None else "",
                _fmt(pred.domain_distance[i]) if pred.domain_distance is not None else "",
                _fmt(pred.human_mgs[i]),
                _fmt(pred.p_int8[i]),
                _fmt(pred.p_raw[i]) if pred.p_raw is not None else "",
            ]
            if pred.au_int8 is not None:
                row += [_fmt(v) for v in pred.au_int8[i]]
            if pred.p_float is not None:
                row.append(_fmt(pred.p_float[i]))
            w.writerow(row)


def _fmt(x: float) -> str:
    return "" if not math.isfinite(float(x)) else f"{float(x):.6f}"
