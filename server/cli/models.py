"""``amgs server model ...``: the model registry, roll-out to devices, shadow comparison, promotion."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .options import config_option, db_option, load


@click.group("model")
def model() -> None:
    """Models on this collector: add, list, assign to devices, compare in shadow, promote or abandon."""


def _registry():
    from amgs.server.models import registry

    return registry


def _fail(e: Exception) -> click.ClickException:
    return click.ClickException(str(e))


@model.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--evaluation",
    "evaluations",
    multiple=True,
    help="figures.json of `amgs model evaluate -o REPORT` or RUN/test of `amgs model train` (repeatable); "
    "a folder means its figures.json. Use DATASET=PATH to name the data set.",
)
@click.option("--notes", default=None)
@config_option
@db_option
def add(file, evaluations, notes, config_path, db_path) -> None:
    """Check FILE (.tflite) against its manifest's sha256 and store it with its evaluations."""
    registry = _registry()
    config, db = load(config_path, db_path)
    evals = []
    for e in evaluations:
        name, path = str(e).split("=", 1) if "=" in str(e) and not Path(e).exists() else (None, str(e))
        p = Path(path)
        evals.append((p / "figures.json" if p.is_dir() else p, name))
    from amgs.server.storage.pg import is_postgres

    # the files sit beside the SQLite file (or --db); with PostgreSQL in the collector's state_dir
    models_dir = (config.storage.state_dir if is_postgres(db) else db.path.parent) / "models"
    try:
        m = registry.add_model(db.local().conn, models_dir, file, evaluations=evals, notes=notes)
    except registry.RegistryError as e:
        raise _fail(e) from None
    flag = "  SYNTHETIC-trained: not validated on real mice" if m["synthetic"] else ""
    click.echo(f"registered {m['name']} {m['version']} sha256 {m['sha256']}{flag}")
    for ev in m["evaluations"]:
        figs = ", ".join(f"{k}={ev['figures'][k]}" for k in registry.HEADLINE if k in ev["figures"])
        click.echo(f"  evaluation {ev['dataset']} ({ev['n_images']} images): {figs}")


@model.command("list")
@click.option("--json", "as_json", is_flag=True)
@config_option
@db_option
def list_(as_json, config_path, db_path) -> None:
    """Registered models, their evaluations, and the devices they run on."""
    registry = _registry()
    _, db = load(config_path, db_path)
    models = registry.list_models(db.local().conn)
    if as_json:
        click.echo(json.dumps(models, indent=2))
        return
    if not models:
        click.echo("no models registered (amgs server model add FILE.tflite)")
    for m in models:
        flag = " SYNTHETIC" if m["synthetic"] else ""
        click.echo(
            f"{m['name']} {m['version']}  {m['sha256'][:16]}{flag}  active on {len(m['active_on'])}, "
            f"candidate on {len(m['candidate_on'])} device(s); {m['scores']} scores, {m['shadow_scores']} shadow"
        )
        for ev in m["evaluations"]:
            figs = ", ".join(f"{k}={ev['figures'][k]}" for k in registry.HEADLINE if k in ev["figures"])
            click.echo(f"    {ev['dataset']} ({ev['n_images']}): {figs}")


def _change(fn, config_path, db_path, *args, **kwargs) -> None:
    registry = _registry()
    _, db = load(config_path, db_path)
    try:
        out = fn(registry, db.local().conn, *args, **kwargs)
    except registry.RegistryError as e:
        raise _fail(e) from None
    click.echo(json.dumps(out))
    click.echo(
        "the running collector sends it to the device within seconds (retained: also when it is offline)",
        err=True,
    )


@model.command("assign")
@click.argument("device_id")
@click.option(
    "--active", default=None, help="NAME:VERSION or sha256; 'configured' = the device's own model.path"
)
@click.option("--candidate", default=None, help="NAME:VERSION or sha256 to score in shadow; 'none' to stop")
@config_option
@db_option
def assign(device_id, active, candidate, config_path, db_path) -> None:
    """Tell DEVICE_ID which model to score with (--active) and which to score in shadow (--candidate)."""
    if active is None and candidate is None:
        raise click.UsageError("give --active and/or --candidate")

    def run(registry, conn):
        kw = {}
        if active is not None:
            kw["active"] = None if active == "configured" else registry.find(conn, active)
        if candidate is not None:
            kw["candidate"] = None if candidate == "none" else registry.find(conn, candidate)
        return registry.assign(conn, device_id, by="cli", **kw)

    _change(run, config_path, db_path)


@model.command("promote")
@click.argument("device_id")
@config_option
@db_option
def promote(device_id, config_path, db_path) -> None:
    """DEVICE_ID's candidate becomes its active model."""
    _change(lambda r, c: r.promote(c, device_id, "cli"), config_path, db_path)


@model.command("abandon")
@click.argument("device_id")
@config_option
@db_option
def abandon(device_id, config_path, db_path) -> None:
    """Stop scoring DEVICE_ID's candidate."""
    _change(lambda r, c: r.abandon(c, device_id, "cli"), config_path, db_path)


@model.command("agreement")
@click.option("--candidate", default=None, help="NAME:VERSION or sha256 (default: every candidate)")
@config_option
@db_option
def agreement(candidate, config_path, db_path) -> None:
    """Active vs candidate per cage, from the shadow scores."""
    registry = _registry()
    _, db = load(config_path, db_path)
    conn = db.local().conn
    try:
        rows = registry.agreement(conn, registry.find(conn, candidate) if candidate else None)
    except registry.RegistryError as e:
        raise _fail(e) from None
    if not rows:
        click.echo("no shadow scores yet")
    for r in rows:
        figures = (
            f"same decision {r['same_decision']:.3f}  mean |dP| {r['mean_abs_dp']:.3f}  r={r['pearson_r']}  "
            f"pain {r['pain_fraction_active']:.2f} -> {r['pain_fraction_candidate']:.2f}"
            if r["n"]
            else "no face both models could score"
        )
        click.echo(
            f"{r['cage_id']:<12} {r['candidate']:<24} n={r['n']:<6} {figures}  unscorable "
            f"{r['unscorable_active']} / {r['unscorable_candidate']}  ms {r['inference_ms_active']} + "
            f"{r['inference_ms_candidate']}"
        )
