"""``amgs model train-detector | quantize-detector | evaluate-detector``: a face detector from a lab's boxes.

DATA is a folder of frames with ``boxes.json`` in the lab format (numbers as strings, several animals
per frame, ``[]`` for a frame without a face) and optionally ``animals.csv`` to split by animal or
session; or a ``.npz`` cache written by an earlier run (``--synthetic N`` makes SYNTHETIC frames).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from amgs.datasets import DatasetError


def _echo(msg: str) -> None:
    click.echo(msg, err=True)


def _load(paths: tuple[Path, ...], size: int, group_by: str):
    import numpy as np

    from amgs.models.detector_data import DetectorSet, load_lab_frames, load_set

    sets: list[DetectorSet] = []
    for p in paths:
        if p.suffix == ".npz":
            cached = load_set(p)
            if cached.images.shape[1] != size:  # a cache made for another input size
                from amgs.detect import detector_pixels

                cached.images = np.stack([detector_pixels(im, (size, size)) for im in cached.images])
            sets.append(cached)
        else:
            sets.append(load_lab_frames(p, size, group_by))
    if not sets:
        return None
    return DetectorSet(
        np.concatenate([s.images for s in sets]),
        [b for s in sets for b in s.boxes],
        [g for s in sets for g in s.groups],
        [n for s in sets for n in s.names],
    )


@click.command("train-detector")
@click.argument("data", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Run folder: model.keras, history.csv, train.json, checkpoints/ (resume).",
)
@click.option(
    "--val",
    "val_paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="Held-out frames (folder or .npz); default: whole groups split off DATA.",
)
@click.option("--val-fraction", type=click.FloatRange(0, 0.9), default=0.2, show_default=True)
@click.option(
    "--group-by",
    default="animal_id",
    show_default=True,
    help="animals.csv column to split by (animal_id, session, ...).",
)
@click.option(
    "--synthetic",
    "n_synthetic",
    type=click.IntRange(0),
    default=0,
    help="Add this many SYNTHETIC cage frames (generated, cached in the run folder).",
)
@click.option("--size", type=click.IntRange(64, 640), default=320, show_default=True)
@click.option("--steps", type=click.IntRange(1), default=3000, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option(
    "--time-budget",
    type=float,
    default=None,
    help="Stop (and save) after this many CPU minutes (all threads); the learning rate decays to fit it.",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=0.3,
    show_default=True,
    help="Working threshold for the validation figures.",
)
@click.option("--seed", type=int, default=0, show_default=True)
def train_detector(
    data,
    out_dir,
    val_paths,
    val_fraction,
    group_by,
    n_synthetic,
    size,
    steps,
    batch_size,
    lr,
    time_budget,
    threshold,
    seed,
) -> None:
    """Train the CenterNet-style face detector on DATA (lab frames + boxes.json, or .npz caches)."""
    from amgs.models.detector_data import load_set, save_set, split_groups, synth_frames
    from amgs.models.detector_train import DetectorTrainConfig, train_detector

    logging.getLogger("amgs.models.detector_train").setLevel(logging.INFO)
    try:
        ds = _load(tuple(data), size, group_by)
        if n_synthetic:
            out_dir.mkdir(parents=True, exist_ok=True)
            cache = out_dir / f"synthetic_{n_synthetic}_{size}_{seed}.npz"
            if cache.exists():
                syn = load_set(cache)
            else:
                _echo(f"rendering {n_synthetic} SYNTHETIC cage frames -> {cache}")
                syn = synth_frames(n_synthetic, size, seed=10_000 + seed)
                save_set(syn, cache)
            ds = syn if ds is None else _load_concat(ds, syn)
        if ds is None:
            raise click.UsageError("give DATA (a folder with boxes.json or a .npz) or --synthetic N")
        if val_paths:
            train, val = ds, _load(tuple(val_paths), size, group_by)
        else:
            tr, va = split_groups(ds, val_fraction, seed)
            train, val = ds.subset(tr), (ds.subset(va) if len(va) else None)
    except DatasetError as e:
        raise click.ClickException(str(e)) from None
    if train.images.shape[1] != size:
        raise click.ClickException(f"frames are {train.images.shape[1]} px but --size is {size}")
    cfg = DetectorTrainConfig(
        size=size,
        batch_size=batch_size,
        steps=steps,
        lr=lr,
        time_budget_min=time_budget,
        seed=seed,
        threshold=threshold,
        warmup_steps=min(100, steps // 10),
        validate_every=max(1, min(500, steps)),
    )
    _echo(
        f"training on {len(train)} frames ({sum(len(b) for b in train.boxes)} faces), "
        f"validating on {len(val) if val is not None else 0} frames of {len(set(val.groups)) if val else 0} held-out group(s)"
    )
    record = train_detector(train, val, out_dir, cfg)
    _echo(json.dumps({k: record[k] for k in ("steps_done", "seconds_this_run", "val_float") if k in record}))
    _echo(f"wrote {out_dir / 'model.keras'}")


def _load_concat(a, b):
    import numpy as np

    from amgs.models.detector_data import DetectorSet

    return DetectorSet(
        np.concatenate([a.images, b.images]), a.boxes + b.boxes, a.groups + b.groups, a.names + b.names
    )


@click.command("quantize-detector")
@click.argument("keras_model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--calibration",
    "calib_paths",
    multiple=True,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Frames (folder with boxes.json, or .npz).",
)
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--name", required=True)
@click.option("--version", "model_version", required=True)
@click.option("--training-data", required=True, help="Where the training frames came from (provenance).")
@click.option("--synthetic/--real", required=True, help="Trained on synthetic frames only, or on real ones.")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=0.3,
    show_default=True,
    help="The device's working score threshold (manifest threshold).",
)
@click.option("--calibration-count", type=click.IntRange(1), default=200, show_default=True)
@click.option("--edgetpu/--no-edgetpu", default=True, show_default=True)
def quantize_detector(
    keras_model,
    calib_paths,
    out,
    name,
    model_version,
    training_data,
    synthetic,
    threshold,
    calibration_count,
    edgetpu,
) -> None:
    """Full int8 (uint8 I/O) face detector .tflite with a `kind: detector` manifest."""
    import keras

    from amgs.models.detector_package import package_detector

    model = keras.models.load_model(keras_model, compile=False)
    try:
        calib = _load(tuple(calib_paths), int(model.input_shape[1]), "animal_id")
    except DatasetError as e:
        raise click.ClickException(str(e)) from None
    try:
        m = package_detector(
            model,
            calib,
            out,
            name=name,
            version=model_version,
            training_data=training_data,
            synthetic=synthetic,
            threshold=threshold,
            calibration_count=calibration_count,
            edgetpu=edgetpu,
        )
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    _echo(
        f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, full int8, {m.input.width}x{m.input.height} "
        f"uint8 input, threshold {m.threshold}) and {out.with_suffix('.manifest.json')}"
    )


@click.command("evaluate-detector")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Report folder: report.md, figures.json, pr_curve.png, scores.png, examples.png.",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=None,
    help="Working threshold (default: the manifest's, which the device uses).",
)
@click.option("--dataset-name", default=None, help="Name of DATA in the manifest (default: its folder name).")
@click.option("--no-manifest", is_flag=True, help="Do not write the figures into the manifest.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
def evaluate_detector(model, data, out_dir, threshold, dataset_name, no_manifest, threads) -> None:
    """Precision, recall, AP@0.5/0.75 and miss rate of an int8 detector on DATA (frames + boxes.json)."""
    from amgs.detect import FaceDetector
    from amgs.manifest import ManifestError
    from amgs.models.detector_eval import evaluate_frames, record_in_manifest, write_report

    try:
        det = FaceDetector(model, num_threads=threads)
        ev = evaluate_frames(det, data, threshold)
    except (ManifestError, DatasetError) as e:
        raise click.ClickException(str(e)) from None
    report = write_report(ev, model, data, out_dir)
    click.echo(json.dumps(ev.figures, indent=2))
    if not no_manifest:
        record_in_manifest(model, dataset_name or data.name, ev.figures)
        _echo(f"figures written into {model.with_suffix('.manifest.json')} (sha256 unchanged)")
    _echo(f"wrote {report}")


COMMANDS = (train_detector, quantize_detector, evaluate_detector)
