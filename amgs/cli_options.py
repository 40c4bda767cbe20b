"""Options and loaders that several ``amgs`` commands share (``amgs score``, ``amgs demo``)."""

from __future__ import annotations

from pathlib import Path

import click


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
