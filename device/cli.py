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
    """Validate the config and print what the agent would run (loads nothing, connects to nothing)."""
    cfg = _load(config_path)
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
