"""``amgs provision``: give each cage device its own broker account, ACL and a ready config bundle.

Run on the collector host (as root). Every device gets a random password stored only as a hash in
Mosquitto's password file (written by ``mosquitto_passwd``, which reads it on stdin, never argv), an
ACL that lets it publish only under ``amgs/v1/{site}/{its id}/`` and read only its own ``ack`` and
``command`` topics, a row in the collector's device table, and a bundle (``device.toml``, ``ca.crt``,
``mqtt-password``) to copy onto the Pi. ``revoke`` takes all of it away again. The ACL file is
regenerated from a registry each time, so it never drifts; passwords are never printed or logged.

The work is split by job: ``provision_config.py`` (the config), ``broker.py`` (passwords, ACL, registry),
``registration.py`` (the collector's database), ``bundle.py`` (the device's files); this module is the CLI.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import click

from amgs import contract

from .broker import (
    Registry,
    collector_acl,
    delete_password,
    device_acl,
    locked_registry,
    new_password,
    reload_broker,
    render_acl,
    set_password,
    viewer_acl,
    write_acl,
    write_private,
)
from .bundle import check_device_config, device_config, parse_region, parse_source, to_toml, write_bundle
from .provision_config import DEFAULT_CONFIG, ProvisionConfig, ProvisionError, load_config
from .registration import register_in_collector

__all__ = [  # what other code and the tests use, from one place
    "DEFAULT_CONFIG",
    "ProvisionConfig",
    "ProvisionError",
    "Registry",
    "check_device_config",
    "cli",
    "collector_acl",
    "device_acl",
    "device_config",
    "load_config",
    "parse_region",
    "parse_source",
    "register_in_collector",
    "render_acl",
    "to_toml",
    "viewer_acl",
    "write_bundle",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- commands


@click.group()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG,
    envvar="AMGS_PROVISION_CONFIG",
    show_default=True,
    help="Provisioning config (site, broker name, file locations).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path) -> None:
    """Broker accounts, ACLs and config bundles for cage devices (run on the collector host)."""
    ctx.obj = config_path


def _cfg(ctx: click.Context) -> ProvisionConfig:
    return load_config(ctx.obj)


@cli.command()
@click.option("--rotate", is_flag=True, help="Replace the collector's existing password.")
@click.pass_context
def collector(ctx: click.Context, rotate: bool) -> None:
    """Create the collector's two broker accounts (ingest session, alert publisher) with their passwords.

    The broker binds each client id to its account, so each of the collector's connections has its own.
    Run again after an upgrade: an account that is missing is created, existing ones are kept.
    """
    cfg = _cfg(ctx)
    accounts = (
        (cfg.collector_user, cfg.collector_password_file),
        (cfg.alerts_user, cfg.alerts_password_file),
    )
    with locked_registry(cfg) as reg:
        made = []
        for user, password_file in accounts:
            if reg.collector_created and password_file.exists() and not rotate:
                click.echo(f"collector account {user} exists (use --rotate to replace its password)")
                continue
            password = new_password()
            set_password(cfg, user, password)
            write_private(password_file, password + "\n", 0o640, cfg.collector_group)
            made.append((user, password_file))
        if not made:
            return
        reg.collector_created = True
        reg.save()
        write_acl(cfg, reg)
        reload_broker(cfg)
    for user, password_file in made:
        click.echo(f"collector account {user}: password in {password_file}")


@cli.command()
@click.argument("name")
@click.option(
    "--cage", "cages", multiple=True, required=True, help="Cage id this device watches (repeatable)."
)
@click.option(
    "--source", default="picamera2", show_default=True, help="picamera2[:N], opencv:URI or folder:PATH"
)
@click.option(
    "--region", "regions", multiple=True, help="x,y,w,h of each cage's face region, in --cage order."
)
@click.option("--rotate", is_flag=True, help="Re-issue the credentials of an already provisioned device.")
@click.option(
    "--device-etc",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the bundle will live on the device (default: device_etc from the config, /etc/amgs).",
)
@click.pass_context
def device(
    ctx: click.Context,
    name: str,
    cages: tuple[str, ...],
    source: str,
    regions: tuple[str, ...],
    rotate: bool,
    device_etc: Path | None,
) -> None:
    """Provision device NAME: broker account + ACL, collector registration, config bundle."""
    cfg = _cfg(ctx)
    if device_etc is not None:
        cfg = cfg.model_copy(update={"device_etc": device_etc})
    try:
        contract.check_id(name, "device name")
        for cage in cages:
            contract.check_id(cage, "cage")
    except contract.ContractError as e:
        raise click.BadParameter(str(e)) from None
    if name in (cfg.collector_user, cfg.alerts_user):
        raise click.BadParameter(f"{name!r} is one of the collector's account names")
    doc = device_config(cfg, name, list(cages), source, [parse_region(r) for r in regions])
    with locked_registry(cfg) as reg:
        rec = reg.devices.get(name, {})
        if reg.active(name) and rec.get("kind", "device") != "device":
            raise ProvisionError(f"{name} is a {rec['kind']} account: revoke it first or choose another name")
        if reg.active(name) and not rotate:
            raise ProvisionError(f"device {name} is already provisioned (use --rotate for new credentials)")
        password = new_password()
        bundle = write_bundle(cfg, name, doc, password)
        set_password(cfg, name, password)
        now = contract.utc_now()
        rec.update(kind="device", site=cfg.site, cages=list(cages), provisioned_at=now, revoked_at=None)
        reg.devices[name] = rec
        reg.save()
        write_acl(cfg, reg)
        reload_broker(cfg)
        skipped = register_in_collector(cfg, name, list(cages), active=True)
    log.info("provisioned device %s (site %s, cages %s)", name, cfg.site, ",".join(cages))
    click.echo(f"device {name}: bundle in {bundle} (device.toml, ca.crt, mqtt-password; keep it private)")
    if skipped:
        click.echo(f"not registered in the collector: {skipped}", err=True)
    click.echo(f"install on the device: sudo scripts/install-device.sh --bundle {bundle.name}/")


@cli.command()
@click.argument("name")
@click.option("--rotate", is_flag=True, help="Re-issue the credentials of an existing viewer account.")
@click.pass_context
def viewer(ctx: click.Context, name: str, rotate: bool) -> None:
    """A read-only account for the alert topics (a corridor display, a pager gateway)."""
    cfg = _cfg(ctx)
    try:
        contract.check_id(name, "account name")
    except contract.ContractError as e:
        raise click.BadParameter(str(e)) from None
    if name in (cfg.collector_user, cfg.alerts_user):
        raise click.BadParameter(f"{name!r} is one of the collector's account names")
    with locked_registry(cfg) as reg:
        rec = reg.devices.get(name, {})
        if reg.active(name) and (rec.get("kind") != "viewer" or not rotate):
            raise ProvisionError(
                f"{name} is already provisioned (as a {rec.get('kind', 'device')}; --rotate renews a viewer)"
            )
        if not cfg.ca_cert.is_file():
            raise ProvisionError(f"CA certificate {cfg.ca_cert} not found: run scripts/make-ca.sh first")
        password = new_password()
        bundle = cfg.bundles_dir / name
        bundle.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(bundle / "mqtt-password", password + "\n", 0o600)
        write_private(bundle / "ca.crt", cfg.ca_cert.read_text(), 0o644)
        set_password(cfg, name, password)
        rec.update(kind="viewer", site=cfg.site, cages=[], provisioned_at=contract.utc_now(), revoked_at=None)
        reg.devices[name] = rec
        reg.save()
        write_acl(cfg, reg)
        reload_broker(cfg)
    click.echo(f"viewer {name}: reads the alert topics; password and CA in {bundle} (keep it private)")


@cli.command()
@click.argument("name")
@click.pass_context
def revoke(ctx: click.Context, name: str) -> None:
    """Take NAME's broker access away (password, ACL) and delete its bundle."""
    cfg = _cfg(ctx)
    with locked_registry(cfg) as reg:
        if not reg.active(name):
            raise ProvisionError(f"device {name} is not provisioned (see `amgs provision list`)")
        delete_password(cfg, name)
        reg.devices[name]["revoked_at"] = contract.utc_now()
        reg.save()
        write_acl(cfg, reg)
        reload_broker(cfg)
        shutil.rmtree(cfg.bundles_dir / name, ignore_errors=True)
        rec = reg.devices[name]
        skipped = None
        if rec.get("kind", "device") == "device":
            skipped = register_in_collector(cfg, name, rec["cages"], active=False)
    log.info("revoked %s %s", rec.get("kind", "device"), name)
    click.echo(f"{rec.get('kind', 'device')} {name}: access revoked")
    if skipped:
        click.echo(f"collector not updated: {skipped}", err=True)


@cli.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_devices(ctx: click.Context, as_json: bool) -> None:
    """Provisioned and revoked devices (no secrets)."""
    cfg = _cfg(ctx)
    reg = Registry(cfg.registry_path)
    if as_json:
        click.echo(json.dumps(reg.devices, indent=2, sort_keys=True))
        return
    for name, rec in sorted(reg.devices.items()):
        state = (
            f"revoked {rec['revoked_at']}"
            if rec.get("revoked_at")
            else f"active since {rec['provisioned_at']}"
        )
        kind = rec.get("kind", "device")
        click.echo(f"{name}\t{kind}\t{rec['site']}\t{','.join(rec['cages']) or '-'}\t{state}")
