"""The ``amgs`` command: ``score``, ``synth`` and ``contract`` here, and the groups of each part
(``device``, ``server``, ``model``, ``provision``, ``demo``). Group modules import only click and the core
at start-up; heavy packages (TensorFlow, OpenCV, the interpreter, the collector's) load inside commands,
and a command whose packages this machine lacks names the extra to install."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import click

from amgs import __version__
from amgs.cli_options import load_scorer, model_options
from amgs.demo.run import cli as demo_cli
from amgs.deploy.provision import cli as provision_cli
from amgs.device.cli import cli as device_cli
from amgs.extras import missing_extra_hint
from amgs.models.cli import cli as model_cli
from amgs.server.cli import cli as server_cli


class _Commands(click.Group):
    """The ``amgs`` group: a command that needs another machine's packages says which extra to install."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as e:
            hint = missing_extra_hint(e)
            if hint is None:
                raise
            raise click.ClickException(hint) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="amgs")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """Automated Mouse Grimace Scale: score mouse faces, run cage devices and the collector."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@model_options
@click.option(
    "-o",
    "--output",
    type=click.File("w"),
    default="-",
    help="Where to write per-image (per-face, per-window) results (default stdout).",
)
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option(
    "--detect", is_flag=True, help="Photos are whole cages: find every face with the detector, score each."
)
@click.option(
    "--boxes",
    "boxes_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Face boxes in the lab JSON format (per image, several animals); each face is scored.",
)
@click.option(
    "--detector",
    "detector_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Face detector .tflite with its manifest (default: the shipped, SYNTHETIC-trained one).",
)
@click.option(
    "--min-score",
    type=click.FloatRange(0, 1),
    default=None,
    help="Detector threshold (default: its manifest's).",
)
@click.option(
    "--margin",
    type=click.FloatRange(0, 1),
    default=0.1,
    show_default=True,
    help="Grow each detected box by this per side.",
)
@click.option(
    "--window", default="10s", show_default=True, help="Videos: one row per window (10s, 1s, 500ms, 2m)."
)
@click.option(
    "--samples",
    type=click.IntRange(1, 100),
    default=5,
    show_default=True,
    help="Videos: frames sampled per window.",
)
@click.option(
    "--region",
    default=None,
    help="Videos: a fixed face region x,y,w,h in frame pixels instead of the detector.",
)
@click.option(
    "--start", default=None, help="Videos: wall time of the first frame (ISO 8601), overriding the file's."
)
@click.option(
    "--plot",
    type=click.Path(path_type=Path),
    default=None,
    help="Videos: write a PNG time course (a .png file for one video, else a folder of <video>.png).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 16),
    default=2,
    show_default=True,
    help="Images: threads decoding and preprocessing ahead of the model.",
)
def score(**options) -> None:
    """Score face images, whole-cage photos (--detect / --boxes) or videos (mp4, avi, mov, mkv).

    Face images: one row per image. Whole-cage photos: one row per face, with its box. Videos: sampled
    frames go through the device's frame selection; one row per window, a summary per video on stderr.
    Each image's outcome is pain, no pain or unscorable (with a reason: out_of_domain, no_face, quality);
    unscorable images are counted but never enter a mean or the fraction pain. Unreadable or corrupt
    files are reported, skipped and counted; they never stop a run.
    """
    from amgs.batch import model_banner
    from amgs.preprocess import iter_image_files
    from amgs.video import iter_video_files

    run = ScoreRun(**options)
    paths, output, progress = list(run.paths), run.output, not run.no_progress
    videos = iter_video_files(paths)
    if videos and iter_image_files([p for p in paths if p not in videos]):
        raise click.UsageError("score images and videos in separate runs (their rows have different columns)")
    scorer = load_scorer(run.model_path, run.threads, run.accelerator, run.backend)
    for line in model_banner(scorer.manifest):  # before any progress bar: read it before any score
        click.echo(line, err=True)
    if videos:
        ok = _score_videos(scorer, videos, run)
    elif run.detect or run.boxes_file:
        from amgs.batch_faces import BoxTable, format_face_summary, run_faces

        det = _load_detector(run) if run.detect or not run.boxes_file else None
        table = BoxTable(run.boxes_file) if run.boxes_file else None
        result = run_faces(scorer, paths, output, run.fmt, det, table, progress=progress)
        click.echo(format_face_summary(result), err=True)
        ok = bool(result.scored or result.no_face)
    else:
        from amgs.batch import format_summary, run_batch

        result = run_batch(scorer, paths, output, run.fmt, progress=progress, workers=run.workers)
        click.echo(format_summary(result), err=True)
        ok = bool(result.scored)
    if scorer.manifest.synthetic:  # and again after, where the eye lands when the run ends
        click.echo(f"model {scorer.manifest.name} is SYNTHETIC-trained: not validated on real mice", err=True)
    if not ok:
        sys.exit(1)


@dataclass(frozen=True)
class ScoreRun:
    """What ``amgs score`` was asked for: its options, handed to the helpers as one object."""

    paths: tuple[Path, ...]
    model_path: Path | None
    threads: int
    accelerator: str
    backend: str
    output: TextIO
    fmt: str
    no_progress: bool
    detect: bool
    boxes_file: Path | None
    detector_path: Path | None
    min_score: float | None
    margin: float
    window: str
    samples: int
    region: str | None
    start: str | None
    plot: Path | None
    workers: int


def _load_detector(run: ScoreRun):
    """The face detector (default: the shipped one) or exit with the reason."""
    from amgs.detect import FaceDetector
    from amgs.manifest import ManifestError
    from amgs.models import DEFAULT_DETECTOR
    from amgs.runtime import RuntimeUnavailable

    if run.detector_path is None and not DEFAULT_DETECTOR.is_file():
        raise click.ClickException(
            f"the shipped face detector {DEFAULT_DETECTOR} is missing (reinstall amgs): pass --detector FILE "
            "(made by `amgs model train-detector` and `quantize-detector`), or --region x,y,w,h for videos, "
            "or --boxes FILE for whole-cage photos"
        )
    try:
        det = FaceDetector(
            run.detector_path or DEFAULT_DETECTOR,
            num_threads=run.threads,
            backend=run.backend,
            min_score=run.min_score,
            margin=run.margin,
        )
    except (ManifestError, RuntimeUnavailable) as e:
        raise click.ClickException(f"detector: {e}") from None
    if det.manifest.synthetic:
        click.echo(
            f"face detector {det.manifest.name} {det.manifest.version} was trained on SYNTHETIC scenes",
            err=True,
        )
    return det


def _score_videos(scorer, videos, run: ScoreRun) -> bool:
    """Score each video; rows to ``output``, a summary per video to stderr, optional PNG time courses."""
    import csv
    from datetime import UTC, datetime

    from amgs.batch_video import (
        WINDOW_COLUMNS,
        format_video_summary,
        plot_video,
        score_video,
        summarize_video,
    )
    from amgs.device.config import SelectionSection
    from amgs.video import VideoError, parse_duration

    output, plot = run.output, run.plot
    try:
        window_s = parse_duration(run.window)
        start_at = datetime.fromisoformat(run.start.replace("Z", "+00:00")) if run.start else None
        if start_at is not None and start_at.tzinfo is None:
            start_at = start_at.replace(tzinfo=UTC)
        box = tuple(int(v) for v in run.region.split(",")) if run.region else None
        if box is not None and (len(box) != 4 or box[2] < 2 or box[3] < 2):
            raise ValueError(f"--region {run.region!r}: expected x,y,w,h")
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    detector = None if box else _load_detector(run)
    writer = csv.writer(output) if run.fmt == "csv" else None
    if writer:
        writer.writerow(WINDOW_COLUMNS)
    any_ok = False
    for path in videos:
        try:
            result = score_video(
                path,
                scorer,
                detector,
                window_s,
                run.samples,
                SelectionSection(),
                start_at,
                progress=not run.no_progress,
                region=box,
            )
        except VideoError as e:
            click.echo(f"skipped: {e}", err=True)
            continue
        any_ok = True
        for row in result.rows:
            if writer:
                writer.writerow(["" if row[c] is None else row[c] for c in WINDOW_COLUMNS])
            else:
                output.write(json.dumps(row) + "\n")
        output.flush()
        summary = summarize_video(result)
        click.echo(format_video_summary(summary), err=True)
        if plot is not None:
            png = plot if (plot.suffix.lower() == ".png" and len(videos) == 1) else plot / f"{path.stem}.png"
            plot_video(result, png, scorer.manifest.synthetic)
            click.echo(f"time course: {png}", err=True)
    return any_ok


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("-n", "--count", default=60, show_default=True, help="Face crops to write (half pain).")
@click.option("--seed", default=0, show_default=True)
@click.option("--size", default=299, show_default=True, help="Face crop size in pixels.")
@click.option(
    "--scenes", default=0, show_default=True, help="Also write this many whole frames with face boxes."
)
@click.option("--animals", default=12, show_default=True)
def synth(out, count, seed, size, scenes, animals) -> None:
    """Write a SYNTHETIC labelled face set in the lab formats (folders, CSVs, box JSON)."""
    from amgs.synth.dataset import write_dataset

    written = write_dataset(out, count, seed=seed, size=size, scenes=scenes, n_animals=animals)
    click.echo(
        f"wrote {written.n_faces} synthetic faces and {written.n_scenes} scenes to {out} (see {out}/SYNTHETIC.txt)"
    )


@main.group()
def contract() -> None:
    """The MQTT wire contract (topics and message schemas)."""


@contract.command("schema")
@click.argument("out_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
def contract_schema(out_dir: Path | None) -> None:
    """Write the JSON Schema files (or print them when no folder is given)."""
    from amgs.contract import MESSAGES, json_schema_document

    for sid in MESSAGES:
        text = json.dumps(json_schema_document(sid), indent=2) + "\n"
        if out_dir is None:
            click.echo(text)
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / (sid.replace("/", ".v") + ".schema.json")).write_text(text)


main.add_command(model_cli, "model")
main.add_command(device_cli, "device")
main.add_command(server_cli, "server")
main.add_command(provision_cli, "provision")
main.add_command(demo_cli, "demo")

if __name__ == "__main__":
    main()
