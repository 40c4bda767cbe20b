"""``amgs device``: run the cage-side agent, or check its config without starting anything."""

from __future__ import annotations

import sys
from pathlib import Path

import click

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path),
    help="The device's TOML config (see examples/device.toml).",
)


@click.group()
def cli() -> None:
    """The cage-side agent: capture, frame selection, scoring, durable no-loss MQTT delivery."""


def _load(config_path: Path):
    from amgs.device.config import ConfigError, load_config

    try:
        return load_config(config_path)
    except ConfigError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)


@cli.command()
@CONFIG_OPTION
def run(config_path: Path) -> None:
    """Run the agent until SIGTERM (systemd: Type=notify, watchdog, state in $STATE_DIRECTORY)."""
    cfg = _load(config_path)
    from amgs.device.agent import Agent, AgentError

    try:
        agent = Agent(cfg)
    except AgentError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(3)
    sys.exit(agent.run())


@cli.command()
@CONFIG_OPTION
def check(config_path: Path) -> None:
    """Validate the config and the model's manifest, and print what the agent would run.

    Loads no interpreter and connects to nothing; refuses (exit 3) what ``run`` would refuse.
    """
    cfg = _load(config_path)
    from amgs.device.agent import AgentError, refuse_unvalidated_model
    from amgs.manifest import ManifestError, manifest_path_for, read_manifest
    from amgs.models import DEFAULT_MODEL

    model_path = cfg.model.path or DEFAULT_MODEL
    try:
        manifest = read_manifest(manifest_path_for(model_path))
        refuse_unvalidated_model(manifest, cfg)
    except (ManifestError, AgentError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(3)
    synthetic = "SYNTHETIC-trained, allowed by model.allow_synthetic" if manifest.synthetic else "lab-trained"
    click.echo(f"model {manifest.name} {manifest.version} ({synthetic}): {model_path}")
    click.echo(f"device {cfg.device.id} at site {cfg.device.site}; state in {cfg.state_path()}")
    for s in cfg.sources:
        click.echo(f"  source {s.name}: {s.kind} {getattr(s, 'path', None) or getattr(s, 'uri', '')}")
    for v in cfg.views:
        det = f"detector {cfg.detector.path or 'shipped'}" if cfg.detector else None
        if v.region:
            where = f"region {list(v.region)}" + (f", {det} inside it" if det else "")
        else:
            where = det or "whole frame"
        click.echo(
            f"  view {v.name}: source {v.source}, cage {v.cage_id}, animal {v.animal_id or '-'}, {where}"
        )
    m = cfg.mqtt
    auth = f"user {m.username} (password from file)" if m.username else "anonymous"
    click.echo(
        f"  mqtt {m.host}:{m.port} {'TLS' if m.tls_ca_file else 'plain'}, {auth}; confirm = {cfg.delivery.confirm}"
    )
