"""``amgs model ...``: train, quantize, inspect, evaluate and explain aMGS models.

TensorFlow is imported inside the commands that need it (train, quantize, evaluate with a Keras float
reference), never at start-up, so ``amgs --help`` stays fast on machines without it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


@click.group()
def cli() -> None:
    """Train, int8-quantize, inspect, evaluate and explain aMGS models."""


@cli.command()
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Run folder: model.keras, model.weights.h5, history.csv, train.json, backup/ (resume).",
)
@click.option(
    "--recipe",
    type=click.Choice(["auto", "head", "finetune"]),
    default="auto",
    show_default=True,
    help="head: frozen ImageNet backbone, only the new softmax and AU heads learn (the paper's; for small "
    "real sets); finetune: every layer learns (a second, optional stage with --weights RUN/model.weights.h5 "
    "and a low --lr, or from random weights on thousands of images). auto: head on ImageNet weights, "
    "else finetune. head with --weights none is refused.",
)
@click.option(
    "--weights",
    default="imagenet",
    show_default=True,
    help="imagenet (Keras' cache; offline: `amgs model weights import FILE` first), none (random init), "
    "or a file: Keras' InceptionV3 notop .h5 (checked against Keras' hash) or a model.weights.h5 of an "
    "earlier run.",
)
@click.option("--size", type=click.IntRange(75, 600), default=299, show_default=True, help="Input pixels.")
@click.option("--epochs", type=click.IntRange(1), default=10, show_default=True)
@click.option(
    "--steps-per-epoch",
    type=click.IntRange(1),
    default=None,
    help="Batches per epoch (default: one pass over the training images).",
)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option(
    "--lr",
    "learning_rate",
    type=float,
    default=1e-3,
    show_default=True,
    help="Peak Adam learning rate (warm-up, then cosine decay).",
)
@click.option("--warmup-steps", type=click.IntRange(0), default=100, show_default=True)
@click.option(
    "--au-heads/--no-au-heads",
    default=True,
    show_default=True,
    help="Train the five action-unit heads from au_scores.csv (mean of raters).",
)
@click.option("--au-loss-weight", type=float, default=1.0, show_default=True)
@click.option("--bn-momentum", type=click.FloatRange(0, 1), default=0.9, show_default=True)
@click.option(
    "--bn-recalibration-batches",
    type=click.IntRange(0),
    default=20,
    show_default=True,
    help="Re-estimate batch-norm statistics on this many training batches after training.",
)
@click.option(
    "--augment/--no-augment",
    default=True,
    show_default=True,
    help="Random crop (up to 10 %), horizontal flip, brightness and contrast.",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0.01, 0.9),
    default=0.15,
    show_default=True,
    help="Share of images held out, split by animal (an animal never sits on both sides).",
)
@click.option(
    "--test-fraction",
    type=click.FloatRange(0, 0.8),
    default=0.15,
    show_default=True,
    help="Share of images held out as the test part (by animal), evaluated at the end into RUN/test/report.md.",
)
@click.option(
    "--animal-from-name",
    metavar="REGEX",
    default=None,
    help="Animal id from each file name (searched in the name): group 'animal', else group 1, else the "
    r"match, e.g. '^([A-Z]+\d+)_' for CTC03_..., '^(\w+ \w+) ' for 'AJ F4 ...'. animals.csv wins where it "
    "names an image. Without either the split is BY IMAGE.",
)
@click.option(
    "--pain-cutoff",
    type=click.FloatRange(0, 2),
    default=1.0,
    show_default=True,
    help="Images with action-unit scores only: pain when mean human MGS >= this (recorded in train.json, "
    "then in the manifest by `amgs model quantize`).",
)
@click.option(
    "--validate-every",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Epochs between validation passes while training (the final held-out check always runs).",
)
@click.option(
    "--time-budget",
    "time_budget_min",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Minutes: stop after the epoch that ends past this, then finish (BN recalibration, save) as usual.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True, help="One line per epoch instead of a progress bar.")
def train(
    data,
    out_dir,
    recipe,
    weights,
    size,
    epochs,
    steps_per_epoch,
    batch_size,
    learning_rate,
    warmup_steps,
    au_heads,
    au_loss_weight,
    bn_momentum,
    bn_recalibration_batches,
    augment,
    val_fraction,
    test_fraction,
    animal_from_name,
    pain_cutoff,
    validate_every,
    time_budget_min,
    seed,
    quiet,
) -> None:
    """Train on the labelled images in DATA (folders pain/ and no pain/, labels.csv, au_scores.csv,
    animals.csv, boxes.json). Interrupted? Run the same command again: it resumes from the last epoch.

    \b
    A lab with a few hundred to a few thousand scored photos (the paper's recipe, Tuttle et al. 2018):
      amgs model weights import inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5   # once, offline
      amgs model train LAB -o runs/head --recipe head --weights imagenet --animal-from-name '^([A-Z]+\\d+)_'
      # optional second stage: every layer, low learning rate, from the head run (same seed: same split)
      amgs model train LAB -o runs/ft --recipe finetune --weights runs/head/model.weights.h5 --lr 1e-4 \\
          --animal-from-name '^([A-Z]+\\d+)_'
    The split (train / validation / test, by animal) is written to RUN/split.csv; the test part is scored
    at the end: RUN/test/report.md. --weights none (random backbone) needs --recipe finetune and thousands
    of images.
    """
    from amgs.datasets import DatasetError
    from amgs.models.train import TrainConfig, resolve_recipe
    from amgs.models.train import train as run_training
    from amgs.models.weights import WeightsError

    recipe = resolve_recipe(recipe, weights)
    cfg = TrainConfig(
        size=size,
        recipe=recipe,
        weights=weights,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
        learning_rate=learning_rate,
        warmup_steps=warmup_steps,
        au_heads=au_heads,
        au_loss_weight=au_loss_weight,
        bn_momentum=bn_momentum,
        bn_recalibration_batches=bn_recalibration_batches,
        augment=augment,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        animal_from_name=animal_from_name,
        pain_cutoff=pain_cutoff,
        validate_every=validate_every,
        time_budget_s=time_budget_min * 60 if time_budget_min else None,
        seed=seed,
    )
    _echo(f"recipe {recipe}, weights {weights}")
    try:
        result = run_training(
            data,
            out_dir,
            cfg,
            verbose=2 if quiet or not sys.stderr.isatty() else 1,
            log_fn=lambda m: _echo(m),
        )
    except (DatasetError, WeightsError, FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    _echo(
        f"wrote {result.model_path} (quantize it with `amgs model quantize {result.model_path} "
        f"--calibration {data} -o MODEL.tflite`)"
    )


@cli.command()
@click.argument("keras_model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--calibration",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Labelled image folder to draw calibration images from (normally the training set).",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The .tflite to write; its manifest goes beside it (.manifest.json).",
)
@click.option("--name", required=True, help="Model name for the manifest.")
@click.option("--version", "model_version", required=True, help="Model version for the manifest.")
@click.option("--training-data", required=True, help="Where the training images came from (provenance).")
@click.option(
    "--synthetic/--real",
    required=True,
    help="Trained on synthetic faces only (not validated on mice) or on real images.",
)
@click.option(
    "--size",
    type=click.IntRange(75, 600),
    default=299,
    show_default=True,
    help="Input pixels of the deployed model (may differ from the training size).",
)
@click.option("--io", "io_dtype", type=click.Choice(["uint8", "int8"]), default="uint8", show_default=True)
@click.option("--calibration-count", type=click.IntRange(1), default=200, show_default=True)
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--review-threshold", type=click.FloatRange(0.5, 1), default=0.65, show_default=True)
@click.option(
    "--edgetpu/--no-edgetpu",
    default=True,
    show_default=True,
    help="Also run edgetpu_compiler (when it is installed).",
)
@click.option(
    "--card",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a model card here (default: beside the model, .card.md).",
)
@click.option(
    "--train-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="The training run folder (its train.json goes into the card); default: the model's folder.",
)
@click.option(
    "--heldout",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Labelled faces of animals never trained on: set the in-domain threshold and the temperature "
    "(default: the training run's validation animals inside --calibration).",
)
def quantize(
    keras_model,
    calibration,
    out,
    name,
    model_version,
    training_data,
    synthetic,
    size,
    io_dtype,
    calibration_count,
    threshold,
    review_threshold,
    edgetpu,
    card,
    train_dir,
    heldout,
) -> None:
    """Full-integer int8 quantization of a trained KERAS_MODEL, with manifest, in-domain check, temperature
    and model card."""
    import shutil

    from amgs.models.card import write_card
    from amgs.models.package import package

    try:
        result = package(
            keras_model,
            calibration,
            out,
            name=name,
            version=model_version,
            training_data=training_data,
            synthetic=synthetic,
            size=size,
            io_dtype=io_dtype,
            calibration_count=calibration_count,
            threshold=threshold,
            review_threshold=review_threshold,
            edgetpu=edgetpu,
            pain_cutoff=_trained_cutoff(train_dir or keras_model.parent),
        )
    except (ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None
    m = result.manifest
    _echo(
        f"wrote {result.model_path} ({result.model_path.stat().st_size / 1e6:.1f} MB, full int8, "
        f"{m.input.width}x{m.input.height} {m.input.dtype} input) and {result.model_path.with_suffix('.manifest.json')}"
    )
    if edgetpu and result.edgetpu_path is None:
        how = "did not produce a model" if shutil.which("edgetpu_compiler") else "is not installed"
        _echo(f"edgetpu_compiler {how}: the model runs on the CPU only (Coral apt repository, x86-64 Linux)")
    if m.pain_cutoff is not None:
        _echo(f"AU-only images were labelled pain at mean MGS >= {m.pain_cutoff} (recorded in the manifest)")
    from amgs.models.calibrate import calibrate, val_animals_of

    try:
        cal = calibrate(
            result.model_path,
            calibration,
            heldout,
            val_animals=val_animals_of(train_dir or keras_model.parent),
            animal_from_name=_trained_config(train_dir or keras_model.parent).get("animal_from_name"),
            progress=sys.stderr.isatty(),
        )
    except ValueError as e:
        # The model itself is sound; without enough held-out images no threshold can be trusted, so the model
        # ships WITHOUT the check, and its manifest, `amgs model info` and every score say so.
        _echo(
            f"WARNING: no in-domain check and no calibration in this model: {e}. Its scores carry no "
            "out-of-domain guard; add held-out images and run `amgs model calibrate` before using it on animals"
        )
    else:
        _echo_calibrated(cal.manifest, cal.ece_before, cal.ece_after)
    card_path = card or result.model_path.with_suffix(".card.md")
    write_card(card_path, result.model_path, train_dir or keras_model.parent)
    _echo(f"wrote model card {card_path}")


def _trained_config(run_dir: Path) -> dict:
    """The config a training run recorded (its train.json), or {}."""
    try:
        return dict(json.loads((run_dir / "train.json").read_text())["config"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _trained_cutoff(run_dir: Path) -> float | None:
    """The AU pain cut-off a training run used (its train.json), or None when it did not record one."""
    try:
        return json.loads((run_dir / "train.json").read_text())["config"].get("pain_cutoff")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _echo_calibrated(m, ece_before: float, ece_after: float) -> None:
    from amgs.models.temperature import T_RANGE

    d, c = m.domain_check, m.calibration
    if not T_RANGE[0] * 1.01 < c.temperature < T_RANGE[1] * 0.99:
        _echo(
            f"WARNING: the temperature hit the edge of its range ({c.temperature}): the model's logits barely "
            "separate the held-out classes; check the model before trusting its P(pain)"
        )
    _echo(
        f"in-domain check: {d.method} on {d.components.shape[0]} principal axes (+ isotropic remainder) of {d.output!r}, "
        f"threshold {d.threshold:.2f} (held-out quantile {d.quantile}); temperature {c.temperature} "
        f"(held-out ECE {ece_before:.4f} -> {ece_after:.4f})"
    )


@cli.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--train",
    "train_data",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="The labelled training faces (or a sample of them): the in-domain statistics.",
)
@click.option(
    "--heldout",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Labelled faces of animals never trained on: the threshold and the temperature.",
)
@click.option(
    "--train-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Without --heldout: the training run whose validation animals (train.json) are held out.",
)
@click.option("--fit-count", type=click.IntRange(20), default=1500, show_default=True)
@click.option("--heldout-count", type=click.IntRange(20), default=1000, show_default=True)
@click.option(
    "--dims", type=click.IntRange(2, 512), default=32, show_default=True, help="Principal components kept."
)
@click.option(
    "--quantile",
    type=click.FloatRange(0.5, 1.0),
    default=0.99,
    show_default=True,
    help="Held-out in-domain quantile that becomes the threshold.",
)
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the computed features here: a re-fit with other --dims/--quantile does not run the model again.",
)
def calibrate(
    model, train_data, heldout, train_dir, fit_count, heldout_count, dims, quantile, threads, cache
) -> None:
    """Give MODEL its in-domain check and temperature (and, for older models, the features/logits outputs
    they read: no retraining). Rewrites the manifest (and the .tflite when outputs are added)."""
    from amgs.datasets import DatasetError
    from amgs.manifest import ManifestError
    from amgs.models.calibrate import calibrate as run_calibration
    from amgs.models.calibrate import val_animals_of

    try:
        cal = run_calibration(
            model,
            train_data,
            heldout,
            val_animals=val_animals_of(train_dir),
            fit_count=fit_count,
            heldout_count=heldout_count,
            dims=dims,
            quantile=quantile,
            threads=threads,
            progress=sys.stderr.isatty(),
            cache=cache,
        )
    except (DatasetError, ManifestError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    if cal.exposed:
        _echo(
            f"{model}: features, features_mixed5 and logits outputs added (new sha256 {cal.manifest.sha256[:16]}...)"
        )
    _echo_calibrated(cal.manifest, cal.ece_before, cal.ece_after)
    _echo(f"written into {model.with_suffix('.manifest.json')}; re-run `amgs model evaluate` for its figures")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and the checks as JSON.")
def info(model, as_json) -> None:
    """What MODEL's manifest and the .tflite file itself say, and whether they agree (exit 1 if not)."""
    from amgs.manifest import ManifestError
    from amgs.models.package import inspect

    try:
        manifest, checks = inspect(model)
    except ManifestError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "manifest": json.loads(manifest.to_json()),
                    "checks": [
                        {"what": c.what, "manifest": c.manifest, "file": c.file, "ok": c.ok} for c in checks
                    ],
                },
                indent=2,
            )
        )
    else:
        click.echo(f"{manifest.name} {manifest.version}  ({manifest.architecture}, {manifest.quantization})")
        click.echo(f"training data: {manifest.training_data}")
        if manifest.synthetic:
            click.echo("SYNTHETIC-trained: a demonstration, not validated on real mice")
        if manifest.kind == "detector":
            click.echo(
                f"face detector: min score {manifest.threshold}, edge TPU compiled: {manifest.edgetpu_compiled}"
            )
        else:
            click.echo(
                f"threshold {manifest.threshold}, review below confidence {manifest.review_threshold}, "
                f"edge TPU compiled: {manifest.edgetpu_compiled}"
            )
            click.echo(_domain_line(manifest))
            c = manifest.calibration
            click.echo(
                "calibration: none (P(pain) is the raw softmax)"
                if c is None
                else f"calibration: temperature {c.temperature} on {c.source} (ECE {c.ece_before} -> "
                f"{c.ece_after} on {c.n} held-out faces)"
            )
        for e in manifest.evaluation:
            figs = ", ".join(f"{k}={v}" for k, v in e.figures.items() if k in _HEADLINE)
            click.echo(f"evaluation on {e.dataset} ({e.n_images} images): {figs}")
        width = max(len(c.what) for c in checks)
        for c in checks:
            mark = "ok      " if c.ok else "MISMATCH"
            detail = c.file if c.ok else f"manifest {c.manifest} / file {c.file}"
            click.echo(f"  {mark} {c.what:<{width}}  {detail}")
    bad = [c for c in checks if not c.ok]
    if bad:
        raise click.ClickException(
            f"{len(bad)} disagreement(s) between {model} and its manifest ({', '.join(c.what for c in bad)}): "
            "restore the original file or re-package with `amgs model quantize`"
        )


_HEADLINE = (
    "accuracy",
    "roc_auc",
    "pearson_r_au_vs_human_mgs",
    "float_int8_identical_decisions",
    "unscorable_fraction",
    "scorable_accuracy",
    "controls_unscorable_fraction",
    "ap50",
    "ap75",
    "recall",
    "precision",
)


def _domain_line(manifest) -> str:
    d = manifest.domain_check
    if d is None:
        return (
            "in-domain check: none (no in-domain check: images unlike the training faces are scored anyway)"
        )
    return (
        f"in-domain check: {d.method}, {d.components.shape[0]} principal axes (+ isotropic remainder) of output {d.output!r}, "
        f"unscorable above {d.threshold:.3f} (the {d.quantile} quantile of {d.n_heldout} held-out faces; "
        f"statistics from {d.n_fit} training faces)"
    )


@cli.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Report folder: report.md, PNG plots, predictions.csv, figures.json.",
)
@click.option(
    "--float-model",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The float model it was quantized from (.keras or float .tflite), for float-vs-int8 agreement.",
)
@click.option("--dataset-name", default=None, help="Name of DATA in the manifest (default: its folder name).")
@click.option(
    "--record",
    is_flag=True,
    help="Also write the figures into MODEL's manifest (refused for the shipped model and inside an installed "
    "package). By default the manifest is not touched: the figures stay in OUT/figures.json.",
)
@click.option("--no-manifest", is_flag=True, hidden=True, help="Accepted for old scripts; now the default.")
@click.option(
    "--pain-cutoff",
    type=click.FloatRange(0, 2),
    default=None,
    help="AU-only labels: pain at mean human MGS >= this (default: the model's manifest, else 1.0).",
)
@click.option(
    "--images",
    "images_list",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Only these images of DATA (one path per line, relative to DATA), e.g. RUN/test_images.txt: the "
    "held-out test part a training run kept.",
)
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--controls",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Also score this many control images per kind (flat, noise, patterns, no-face scenes, exposure, "
    "photos): the share that comes out unscorable.",
)
@click.option("--controls-seed", type=int, default=2, show_default=True)
def evaluate(
    model,
    data,
    out_dir,
    float_model,
    dataset_name,
    record,
    no_manifest,
    pain_cutoff,
    images_list,
    threads,
    controls,
    controls_seed,
) -> None:
    """Accuracy, sensitivity, specificity, ROC AUC, calibration, r/ICC vs human MGS, per animal, float vs int8,
    the share of unscorable images and the figures on the scorable ones (and on controls)."""
    from amgs.datasets import DatasetError
    from amgs.manifest import ManifestError
    from amgs.models.evaluate import evaluate as run_evaluation

    try:
        result = run_evaluation(
            model,
            data,
            out_dir,
            float_model=float_model,
            dataset_name=dataset_name,
            write_manifest=record and not no_manifest,
            progress=sys.stderr.isatty(),
            threads=threads,
            pain_cutoff=pain_cutoff,
            only={ln.strip() for ln in images_list.read_text().splitlines() if ln.strip()}
            if images_list
            else None,
            controls=controls,
            controls_seed=controls_seed,
        )
    except (DatasetError, ManifestError, ValueError, ImportError) as e:
        raise click.ClickException(str(e)) from None
    for k, v in result.figures.items():
        click.echo(f"{k:40s} {v}")
    _echo(
        f"report: {result.report}"
        + (
            f"; figures written into {model.with_suffix('.manifest.json')}"
            if record and not no_manifest
            else ""
        )
    )


@cli.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("image", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PNG to write (default: IMAGE name + .occlusion.png in the current folder).",
)
@click.option(
    "--patch", type=click.IntRange(2), default=48, show_default=True, help="Occluder size in model pixels."
)
@click.option("--stride", type=click.IntRange(1), default=24, show_default=True)
@click.option("--box", default=None, help="Face box x,y,w,h in image pixels (default: the whole image).")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
def explain(model, image, out, patch, stride, box, threads) -> None:
    """Occlusion heat map on the int8 MODEL: which face region drove IMAGE's score."""
    from amgs.manifest import ManifestError
    from amgs.models.explain import occlusion_map, save_overlay
    from amgs.preprocess import ImageError
    from amgs.runtime import Model
    from amgs.scoring import Scorer

    crop = None
    if box:
        try:
            crop = tuple(int(v) for v in box.split(","))
            assert len(crop) == 4
        except (ValueError, AssertionError):
            raise click.BadParameter(f"{box!r}: give x,y,w,h as four integers", param_hint="--box") from None
    try:
        scorer = Scorer(Model(model, num_threads=threads))
        occ = occlusion_map(scorer, image, patch=patch, stride=stride, box=crop)
    except (ManifestError, ImageError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    out = out or Path(image.name).with_suffix(".occlusion.png")
    save_overlay(occ, out, f"{image.name} - {scorer.manifest.name} {scorer.manifest.version}")
    click.echo(f"P(pain) {occ.p_pain:.3f}; heat map: {out}")
    for target in occ.heats:
        x, y, w, h = occ.top_region(target)
        change = occ.heats[target][y + h // 2, x + w // 2]
        click.echo(
            f"  {target:5s} most changed by hiding x={x} y={y} w={w} h={h} (model pixels): {change:+.3f}"
        )


@cli.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Card to write (default: beside the model, .card.md).",
)
@click.option(
    "--train-dir",
    "train_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Training run folder(s), in order (their train.json describe the recipe).",
)
@click.option(
    "--intro",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Markdown to put after the title (e.g. how this model was made).",
)
def card(model, out, train_dirs, intro) -> None:
    """(Re)write MODEL's card (a scorer's or a face detector's) from its manifest, evaluations included,
    and its training records."""
    from amgs.manifest import ManifestError, manifest_path_for, read_manifest
    from amgs.models.card import write_card
    from amgs.models.detector_card import write_detector_card

    text = intro.read_text() if intro else ""
    try:
        if read_manifest(manifest_path_for(model)).kind == "detector":
            path = write_detector_card(
                out or model.with_suffix(".card.md"), model, train_dirs[-1] if train_dirs else None, text
            )
        else:
            path = write_card(out or model.with_suffix(".card.md"), model, list(train_dirs), text)
    except ManifestError as e:
        raise click.ClickException(str(e)) from None
    _echo(f"wrote {path}")


@cli.group()
def weights() -> None:
    """ImageNet InceptionV3 weights for an offline training machine (checked against Keras' own hash)."""


@weights.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def weights_import(file) -> None:
    """Check FILE (inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5, copied from a machine with
    internet) against the hash the installed Keras carries, and store it in Keras' cache so that
    `amgs model train --weights imagenet` works offline."""
    from amgs.models.weights import WeightsError, import_weights, keras_notop_hash

    try:
        want = keras_notop_hash()
        target = import_weights(file, expected=want)
    except (WeightsError, OSError) as e:
        raise click.ClickException(str(e)) from None
    _echo(f"{file}: {want.algorithm} {want.value} as Keras expects (from {want.source})")
    click.echo(f"stored {target}: --weights imagenet now works offline")


@weights.command("status")
def weights_status() -> None:
    """Whether Keras' cache holds the ImageNet notop weights, and whether they pass Keras' hash."""
    from amgs.models.weights import WeightsError, imagenet_status, keras_notop_hash

    try:
        want = keras_notop_hash()
    except WeightsError as e:
        raise click.ClickException(str(e)) from None
    path, state = imagenet_status(want)
    click.echo(f"{path}: {state} (Keras expects {want.algorithm} {want.value}, from {want.source})")
    if state != "ok":
        raise click.ClickException(
            "run `amgs model weights import FILE` with the notop .h5 from a machine with internet"
        )


def _add_detector_commands() -> None:
    """The face detector's commands live in their own module (``amgs.models.detector_cli``)."""
    from amgs.models.detector_cli import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_add_detector_commands()
