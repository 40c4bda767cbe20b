"""``amgs provision``: give each cage device its own broker account, ACL and a ready config bundle.

Run on the collector host (as root). Every device gets a random password stored only as a hash in
Mosquitto's password file (written by ``mosquitto_passwd``, which reads it on stdin, never argv), an
ACL that lets it publish only under ``amgs/v1/{site}/{its id}/`` and read only its own ``ack`` and
``command`` topics, a row in the collector's device table, and a bundle (``device.toml``, ``ca.crt``,
``mqtt-password``) to copy onto the Pi. ``revoke`` takes all of it away again. The ACL file is
regenerated from a registry each time, so it never drifts; passwords are never printed or logged.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import logging
import os
import secrets
import shutil
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import click
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from amgs import contract

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("/etc/amgs/provision.toml")
Id = Annotated[str, Field(pattern=contract.ID_PATTERN)]


class ProvisionError(click.ClickException):
    """Provisioning could not finish; the message says what to do."""


class ProvisionConfig(BaseModel):
    """``/etc/amgs/provision.toml`` (written by scripts/install-collector.sh)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: Id = Field(description="site id every device of this collector publishes under")
    broker_host: str = Field(description="name devices connect to; must be in the broker certificate")
    broker_port: int = Field(8883, ge=1, le=65535, description="the broker's TLS listener")
    password_file: Path = Path("/etc/mosquitto/amgs/passwd")
    acl_file: Path = Path("/etc/mosquitto/amgs/acl")
    ca_cert: Path = Path("/etc/mosquitto/amgs/certs/ca.crt")
    broker_group: str | None = Field(
        "mosquitto", description="group the broker reads passwd/acl as; '' = leave the group alone"
    )
    state_dir: Path = Field(Path("/var/lib/amgs-provision"), description="registry and device bundles")
    collector_user: Id = "collector"
    collector_password_file: Path = Path("/etc/amgs/collector-mqtt-password")
    collector_group: str | None = Field(
        "amgs", description="group the collector service runs as; '' = leave the group alone"
    )
    server_config: Path | None = Field(
        Path("/etc/amgs/server.toml"), description="collector config: devices are registered in its database"
    )
    reload_command: list[str] = Field(
        ["systemctl", "try-reload-or-restart", "mosquitto"],
        description="makes a running broker re-read passwd/acl (SIGHUP); [] = skip",
    )
    device_etc: Path = Field(Path("/etc/amgs"), description="where the bundle is installed on the device")
    mosquitto_passwd: str = "mosquitto_passwd"

    @property
    def registry_path(self) -> Path:
        return self.state_dir / "devices.json"

    @property
    def bundles_dir(self) -> Path:
        return self.state_dir / "bundles"


def load_config(path: Path) -> ProvisionConfig:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ProvisionError(
            f"{path}: no provisioning config; scripts/install-collector.sh writes it (or pass --config)"
        ) from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ProvisionError(f"{path}: cannot read it as TOML: {e}") from None
    try:
        return ProvisionConfig.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(ProvisionConfig.model_fields)
                problems.append(f"unknown key {key!r} (allowed: {allowed})")
            else:
                problems.append(f"{key} = {err.get('input')!r:.80}: {err['msg']}")
        raise ProvisionError(f"{path}: " + "; ".join(problems)) from None


# --------------------------------------------------------------------------- ACL


def _wildcard(topic: str, *placeholders: str) -> str:
    """Replace the placeholder id levels of a contract topic by MQTT's single-level wildcard."""
    return "/".join("+" if level in placeholders else level for level in topic.split("/"))


_ANY_SITE, _ANY_DEVICE, _ANY_ITEM = "0site0", "0device0", "0item0"


def device_acl(site: str, device: str) -> list[str]:
    """A device writes its own score/status/crop topics and reads only its own ack and command."""
    return [
        f"topic write {contract.score_topic(site, device)}",
        f"topic write {contract.status_topic(site, device)}",
        f"topic write {_wildcard(contract.crop_topic(site, device, _ANY_ITEM), _ANY_ITEM)}",
        f"topic read {contract.ack_topic(site, device)}",
        f"topic read {contract.command_topic(site, device)}",
    ]


def collector_acl() -> list[str]:
    """The collector reads every device's data and writes watermarks, commands and alerts."""
    any_dev = (_ANY_SITE, _ANY_DEVICE)
    lines = [f"topic read {t}" for t in contract.collector_subscriptions("+")]
    lines += [
        f"topic readwrite {_wildcard(contract.ack_topic(*any_dev), *any_dev)}",
        f"topic write {_wildcard(contract.command_topic(*any_dev), *any_dev)}",
        f"topic readwrite {_wildcard(contract.alert_topic(_ANY_SITE, _ANY_ITEM), _ANY_SITE, _ANY_ITEM)}",
    ]
    return lines


def viewer_acl() -> list[str]:
    """A display or pager gateway: reads the current alert state of every cage, nothing else."""
    return [f"topic read {_wildcard(contract.alert_topic(_ANY_SITE, _ANY_ITEM), _ANY_SITE, _ANY_ITEM)}"]


def render_acl(collector_user: str, devices: dict[str, dict[str, Any]]) -> str:
    out = [
        "# Generated by `amgs provision` from its registry: do not edit (changes are overwritten).",
        "# Nothing is granted before the first 'user' line, so anonymous or unknown clients get nothing.",
        "",
        f"user {collector_user}",
        *collector_acl(),
    ]
    for name in sorted(devices):
        rec = devices[name]
        if rec.get("revoked_at"):
            continue
        grants = viewer_acl() if rec.get("kind") == "viewer" else device_acl(rec["site"], name)
        out += ["", f"user {name}", *grants]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- files


def _write_private(path: Path, text: str, mode: int, group: str | None = None) -> None:
    """Write atomically with the given mode (and group), so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        _chgrp(tmp, group)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _chgrp(path: Path, group: str | None) -> None:
    if not group:
        return
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        log.warning("group %s does not exist: %s keeps its current group", group, path)
        return
    try:
        os.chown(path, -1, gid)
    except PermissionError:
        raise ProvisionError(
            f"cannot give group {group} access to {path}: run amgs provision as root"
        ) from None


class Registry:
    """The provisioned devices (JSON, no secrets), the source the ACL file is generated from."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.collector_created = False
        self.devices: dict[str, dict[str, Any]] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text())
                self.devices = data["devices"]
                self.collector_created = bool(data.get("collector_created"))
            except (ValueError, KeyError, TypeError) as e:
                raise ProvisionError(f"{path}: registry is damaged ({e}); restore it from backup") from None

    def save(self) -> None:
        doc = {"version": 1, "collector_created": self.collector_created, "devices": self.devices}
        _write_private(self.path, json.dumps(doc, indent=2, sort_keys=True) + "\n", 0o640)

    def active(self, name: str) -> bool:
        rec = self.devices.get(name)
        return rec is not None and not rec.get("revoked_at")


@contextlib.contextmanager
def _locked(cfg: ProvisionConfig) -> Iterator[Registry]:
    """One provisioning step at a time (two admins, or a script in a loop)."""
    cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
    with open(cfg.state_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield Registry(cfg.registry_path)


# --------------------------------------------------------------------------- broker


def _passwd(cfg: ProvisionConfig, *args: str, stdin: str | None = None) -> None:
    exe = shutil.which(cfg.mosquitto_passwd)
    if exe is None:
        raise ProvisionError(f"{cfg.mosquitto_passwd} not found: install the mosquitto package")
    proc = subprocess.run([exe, *args], input=stdin, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise ProvisionError(f"mosquitto_passwd failed: {detail[-1] if detail else proc.returncode}")


def set_password(cfg: ProvisionConfig, user: str, password: str) -> None:
    """Add or replace ``user`` in the broker's password file; the password goes over stdin only."""
    if not cfg.password_file.exists():
        _write_private(cfg.password_file, "", 0o640, cfg.broker_group)
    _passwd(cfg, str(cfg.password_file), user, stdin=f"{password}\n{password}\n")
    os.chmod(cfg.password_file, 0o640)
    _chgrp(cfg.password_file, cfg.broker_group)


def delete_password(cfg: ProvisionConfig, user: str) -> None:
    if cfg.password_file.exists():
        users = [line.split(":", 1)[0] for line in cfg.password_file.read_text().splitlines()]
        if user in users:
            _passwd(cfg, "-D", str(cfg.password_file), user)


def write_acl(cfg: ProvisionConfig, reg: Registry) -> None:
    _write_private(cfg.acl_file, render_acl(cfg.collector_user, reg.devices), 0o640, cfg.broker_group)


def reload_broker(cfg: ProvisionConfig) -> None:
    if not cfg.reload_command:
        return
    proc = subprocess.run(cfg.reload_command, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise ProvisionError(
            f"password and ACL files are updated, but {' '.join(cfg.reload_command)!r} failed "
            f"({proc.stderr.strip() or proc.returncode}): reload Mosquitto by hand (systemctl reload mosquitto)"
        )


def new_password() -> str:
    return secrets.token_urlsafe(32)


# --------------------------------------------------------------------------- collector registration


def register_in_collector(cfg: ProvisionConfig, name: str, cages: list[str], active: bool) -> str | None:
    """Record the device (and which cages it watches from now on) in the collector's database.

    Revoking un-registers the device and ends its cage assignments, so a collector configured with
    ``ingest.require_registered_devices`` quarantines anything still arriving from it. Returns why
    registration was skipped, if it was.
    """
    if cfg.server_config is None:
        return "no server_config in the provisioning config"
    if not cfg.server_config.exists():
        return f"{cfg.server_config} does not exist (run scripts/install-collector.sh first)"
    from amgs.server.config import ConfigError, load_config

    try:
        storage = load_config(cfg.server_config).storage
    except ConfigError as e:
        raise ProvisionError(f"broker access is updated, but the collector database is not: {e}") from None
    storage.state_dir.mkdir(parents=True, exist_ok=True)
    _as_owner_of(storage.state_dir, lambda: _record_device(storage, cfg.site, name, cages, active))
    return None


def _record_device(storage, site: str, name: str, cages: list[str], active: bool) -> None:
    from amgs.server.query import metadata
    from amgs.server.storage.db import CollectorDB

    db = CollectorDB.from_config(storage)
    db.migrate(storage.backups_dir if storage.backup_before_migrate else None, storage.backups_keep)
    conn = db.connect()
    now = time.time()
    try:
        conn.execute("BEGIN IMMEDIATE")
        open_assignments = "UPDATE device_assignments SET end_t = ? WHERE device_id = ? AND end_t IS NULL"
        conn.execute(open_assignments, [now, name])
        if active:
            metadata.save(conn, "sites", {"site_id": site})
            metadata.save(conn, "devices", {"device_id": name, "site": site})
            for cage in cages:
                metadata.save(conn, "cages", {"cage_id": cage, "site_id": site})
                start = datetime.fromtimestamp(now, UTC)
                metadata.save(
                    conn, "assignments", {"device_id": name, "cage_id": cage, "view": cage, "start": start}
                )
        else:
            conn.execute("UPDATE devices SET registered = 0 WHERE device_id = ?", [name])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:
        conn.close()


def _as_owner_of(path: Path, work: Callable[[], None]) -> None:
    """Run ``work`` as the user owning ``path``: root writing the collector's database (or its WAL and
    backup files) would leave files the collector, running as ``amgs``, cannot open."""
    st = path.stat()
    if os.geteuid() != 0 or st.st_uid == 0:
        work()
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop to the owner, do the work, report, exit without cleanup handlers
        os.close(read_end)
        code, message = 0, b""
        try:
            os.setgroups([])
            os.setgid(st.st_gid)
            os.setuid(st.st_uid)
            work()
        except BaseException as e:  # noqa: BLE001 - everything goes back to the parent as text
            code, message = 1, f"{type(e).__name__}: {e}".encode()[:4000]
        os.write(write_end, message)
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        message = f.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise ProvisionError(
            f"broker access is updated, but the collector database is not: {message.decode(errors='replace')}"
        )


# --------------------------------------------------------------------------- device bundle


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str | Path):
        return json.dumps(str(v))
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(doc: dict[str, Any]) -> str:
    """TOML for the flat tables and arrays of tables a device config has."""
    out: list[str] = []
    for key, value in doc.items():
        rows = value if isinstance(value, list) else [value]
        header = f"[[{key}]]" if isinstance(value, list) else f"[{key}]"
        for row in rows:
            out.append(header)
            out += [f"{k} = {_toml_value(v)}" for k, v in row.items() if v is not None]
            out.append("")
    return "\n".join(out)


def parse_source(spec: str) -> dict[str, Any]:
    """``picamera2[:N]``, ``opencv:URI`` (V4L2 device, RTSP/HTTP URL, video file) or ``folder:PATH``."""
    kind, _, arg = spec.partition(":")
    if kind == "picamera2":
        return {"kind": "picamera2", "camera": int(arg) if arg else 0}
    if kind == "opencv" and arg:
        return {"kind": "opencv", "uri": arg}
    if kind == "folder" and arg:
        return {"kind": "folder", "path": arg}
    raise click.BadParameter(f"{spec!r}: use picamera2[:N], opencv:URI or folder:PATH", param_hint="--source")


def parse_region(spec: str) -> list[int]:
    try:
        region = [int(x) for x in spec.split(",")]
    except ValueError:
        region = []
    if len(region) != 4:
        raise click.BadParameter(f"{spec!r}: give x,y,w,h in source pixels", param_hint="--region")
    return region


def device_config(
    cfg: ProvisionConfig, name: str, cages: list[str], source: str, regions: list[list[int]]
) -> dict[str, Any]:
    """The device's config (schema: amgs.device.config) pointing at the bundle's installed paths."""
    if regions and len(regions) != len(cages):
        raise click.BadParameter(f"{len(cages)} cage(s) but {len(regions)} region(s): give one per cage")
    base = parse_source(source)
    if len(cages) > 1 and not regions and base["kind"] != "picamera2":
        raise click.BadParameter("cages that share one source need a --region each")
    sources: list[dict[str, Any]] = []
    views: list[dict[str, Any]] = []
    for i, cage in enumerate(cages):
        if i == 0 or not regions:  # one source per cage, unless regions split one frame
            src = dict(base)
            if base["kind"] == "picamera2" and not regions:
                src["camera"] = base["camera"] + i
            sources.append({"kind": src.pop("kind"), "name": f"cam{len(sources)}", **src})
        views.append(
            {
                "name": cage,
                "source": sources[-1]["name"],
                "cage_id": cage,
                "region": regions[i] if regions else None,
            }
        )
    return {
        "device": {"id": name, "site": cfg.site},
        "mqtt": {
            "host": cfg.broker_host,
            "port": cfg.broker_port,
            "username": name,
            "password_file": str(cfg.device_etc / "mqtt-password"),
            "tls_ca_file": str(cfg.device_etc / "ca.crt"),
        },
        "sources": sources,
        "views": views,
    }


def check_device_config(doc: dict[str, Any], bundle: Path) -> None:
    """Validate against the device's own schema (file paths swapped for the bundle's copies)."""
    try:
        from amgs.device.config import DeviceConfig
    except ModuleNotFoundError:  # pragma: no cover - the device part ships with the package
        return
    local = json.loads(json.dumps(doc))
    local["mqtt"]["password_file"] = str(bundle / "mqtt-password")
    local["mqtt"]["tls_ca_file"] = str(bundle / "ca.crt")
    for s in local["sources"]:
        if s["kind"] == "folder":
            s["path"] = str(bundle)
    try:
        DeviceConfig.model_validate(local)
    except ValidationError as e:
        raise ProvisionError(f"the generated device config does not validate: {e}") from None


def write_bundle(cfg: ProvisionConfig, name: str, doc: dict[str, Any], password: str) -> Path:
    if not cfg.ca_cert.is_file():
        raise ProvisionError(f"CA certificate {cfg.ca_cert} not found: run scripts/make-ca.sh first")
    bundle = cfg.bundles_dir / name
    bundle.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(bundle, 0o700)
    _write_private(bundle / "mqtt-password", password + "\n", 0o600)
    _write_private(bundle / "ca.crt", cfg.ca_cert.read_text(), 0o644)
    header = (
        f"# aMGS device {name}: written by `amgs provision device` on {contract.utc_now()}.\n"
        f"# Install on the device with scripts/install-device.sh --bundle DIR (files go to {cfg.device_etc}).\n"
        "# Add capture schedule, selection and model settings as docs/device.md describes.\n\n"
    )
    check_device_config(doc, bundle)
    _write_private(bundle / "device.toml", header + to_toml(doc), 0o644)
    return bundle


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
    """Create the collector's broker account; its password goes to collector_password_file."""
    cfg = _cfg(ctx)
    with _locked(cfg) as reg:
        if reg.collector_created and cfg.collector_password_file.exists() and not rotate:
            click.echo(
                f"collector account {cfg.collector_user} exists (use --rotate to replace its password)"
            )
            return
        password = new_password()
        set_password(cfg, cfg.collector_user, password)
        _write_private(cfg.collector_password_file, password + "\n", 0o640, cfg.collector_group)
        reg.collector_created = True
        reg.save()
        write_acl(cfg, reg)
        reload_broker(cfg)
    click.echo(f"collector account {cfg.collector_user}: password in {cfg.collector_password_file}")


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
    if name == cfg.collector_user:
        raise click.BadParameter(f"{name!r} is the collector's account name")
    doc = device_config(cfg, name, list(cages), source, [parse_region(r) for r in regions])
    with _locked(cfg) as reg:
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
    if name == cfg.collector_user:
        raise click.BadParameter(f"{name!r} is the collector's account name")
    with _locked(cfg) as reg:
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
        _write_private(bundle / "mqtt-password", password + "\n", 0o600)
        _write_private(bundle / "ca.crt", cfg.ca_cert.read_text(), 0o644)
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
    with _locked(cfg) as reg:
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
