"""The ``amgs`` command. Each room adds its own subcommands (device, server, model, demo, provision);
heavy imports (TensorFlow, OpenCV, the interpreter) happen inside commands, never at start-up."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from amgs import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="amgs")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """Automated Mouse Grimace Scale: score mouse faces, run cage devices and the collector."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def model_options(f):
    f = click.option(
        "--model",
        "model_path",
        type=click.Path(path_type=Path),
        default=None,
        help="A .tflite with its manifest (default: the shipped model).",
    )(f)
    f = click.option("--threads", type=int, default=1, show_default=True, help="Interpreter threads.")(f)
    f = click.option(
        "--accelerator", type=click.Choice(["auto", "cpu", "edgetpu"]), default="auto", show_default=True
    )(f)
    f = click.option(
        "--backend",
        type=click.Choice(["auto", "litert", "tflite_runtime", "tensorflow"]),
        default="auto",
        show_default=True,
    )(f)
    return f


def load_scorer(model_path: Path | None, threads: int = 1, accelerator: str = "auto", backend: str = "auto"):
    """Load a model (default: the shipped one) or exit with the reason."""
    from amgs.manifest import ManifestError
    from amgs.models import DEFAULT_MODEL
    from amgs.runtime import Model, RuntimeUnavailable
    from amgs.scoring import Scorer

    try:
        return Scorer(
            Model(model_path or DEFAULT_MODEL, num_threads=threads, accelerator=accelerator, backend=backend)
        )
    except (ManifestError, RuntimeUnavailable) as e:
        raise click.ClickException(str(e)) from None


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@model_options
@click.option(
    "-o",
    "--output",
    type=click.File("w"),
    default="-",
    help="Where to write per-image results (default stdout).",
)
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def score(paths, model_path, threads, accelerator, backend, output, fmt, no_progress) -> None:
    """Score image files and folders (recursively); print a per-folder summary to stderr.

    Each image's outcome is pain, no pain or unscorable (with a reason: out_of_domain, no_face, quality);
    unscorable images are counted but never enter a mean or the fraction pain. Unreadable or corrupt
    files are reported, skipped and counted; they never stop the run.
    """
    from amgs.batch import format_summary, model_banner, run_batch

    scorer = load_scorer(model_path, threads, accelerator, backend)
    for line in model_banner(scorer.manifest):  # before the progress bar: read it before any score
        click.echo(line, err=True)
    result = run_batch(scorer, list(paths), output, fmt, progress=not no_progress)
    click.echo(format_summary(result), err=True)
    if scorer.manifest.synthetic:  # and again after, where the eye lands when the run ends
        click.echo(f"model {scorer.manifest.name} is SYNTHETIC-trained: not validated on real mice", err=True)
    if not result.scored:
        sys.exit(1)


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


@main.command()
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("var/demo"), show_default=True)
@model_options
def demo(workdir, model_path, threads, accelerator, backend) -> None:
    """Score a freshly generated SYNTHETIC study set with the shipped model and print the summary."""
    from amgs.batch import format_summary, run_batch
    from amgs.synth.dataset import write_dataset

    faces = workdir / "faces"
    if not (faces / "SYNTHETIC.txt").exists():
        write_dataset(faces, 40, seed=2026, n_animals=8)
    scorer = load_scorer(model_path, threads, accelerator, backend)
    with open(workdir / "scores.csv", "w") as out:
        result = run_batch(scorer, [faces / "no pain", faces / "pain"], out, progress=True)
    click.echo(format_summary(result))
    click.echo(
        f"per-image results: {workdir / 'scores.csv'}; model {scorer.manifest.name} {scorer.manifest.version} (synthetic-trained)"
    )


@main.group()
def contract() -> None:
    """The MQTT wire contract (topics and message schemas)."""


@contract.command("schema")
@click.argument("out_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
def contract_schema(out_dir: Path | None) -> None:
    """Write the JSON Schema files (or print them when no folder is given)."""
    from amgs.contract import SCHEMAS, json_schema_document

    for sid in SCHEMAS:
        text = json.dumps(json_schema_document(sid), indent=2) + "\n"
        if out_dir is None:
            click.echo(text)
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / (sid.replace("/", ".v") + ".schema.json")).write_text(text)


ROOM_COMMANDS = (
    # (module, click object, command name); a later entry with the same name replaces an earlier one.
    ("amgs.models.cli", "cli", "model"),
    ("amgs.device.cli", "cli", "device"),
    ("amgs.server.cli", "cli", "server"),
    ("amgs.server.provision", "cli", "provision"),
    ("amgs.server.demo", "cli", "demo"),
)


def _register_rooms() -> None:
    """Add the subcommands each room defines. Room CLI modules import heavy packages inside commands only."""
    import importlib

    for module, attr, name in ROOM_COMMANDS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue  # that room has not written this command
            raise
        main.add_command(getattr(mod, attr), name)


_register_rooms()

if __name__ == "__main__":
    main()
