"""The ``amgs`` command: ``score``, ``synth`` and ``contract`` here, and the groups of each part
(``device``, ``server``, ``model``, ``provision``, ``demo``). Group modules import only click and the core
at start-up; heavy packages (TensorFlow, OpenCV, the interpreter, the collector's) load inside commands,
and a command whose packages this machine lacks names the extra to install."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

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
    help="Where to write per-image results (default stdout).",
)
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def score(paths, model_path, threads, accelerator, backend, output, fmt, no_progress) -> None:
    """Score image files and folders (recursively); print a per-folder summary to stderr.

    Unreadable or corrupt files are reported, skipped and counted; they never stop the run.
    """
    from amgs.batch import format_summary, run_batch

    scorer = load_scorer(model_path, threads, accelerator, backend)
    result = run_batch(scorer, list(paths), output, fmt, progress=not no_progress)
    click.echo(format_summary(result), err=True)
    m = scorer.manifest
    if m.synthetic:
        click.echo(
            f"model {m.name} {m.version} was trained on SYNTHETIC faces: a demonstration, not validated on real mice",
            err=True,
        )
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
