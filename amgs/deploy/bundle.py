"""The device bundle: ``device.toml`` (schema ``amgs.device.config``, checked before it is written),
``ca.crt`` and ``mqtt-password``, ready to copy onto the Pi."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
import tomli_w
from pydantic import ValidationError

from amgs import contract
from amgs.device.config import DeviceConfig  # core-only imports: ships with every install

from .broker import write_private
from .provision_config import ProvisionConfig, ProvisionError

# --------------------------------------------------------------------------- device bundle


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_none(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def to_toml(doc: dict[str, Any]) -> str:
    """TOML text of a config document (tomli-w); keys set to None are left out (TOML has no null)."""
    return tomli_w.dumps(_without_none(doc))


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
    write_private(bundle / "mqtt-password", password + "\n", 0o600)
    write_private(bundle / "ca.crt", cfg.ca_cert.read_text(), 0o644)
    header = (
        f"# aMGS device {name}: written by `amgs provision device` on {contract.utc_now()}.\n"
        f"# Install on the device with scripts/install-device.sh --bundle DIR (files go to {cfg.device_etc}).\n"
        "# Add capture schedule, selection and model settings as docs/device.md describes.\n\n"
    )
    check_device_config(doc, bundle)
    write_private(bundle / "device.toml", header + to_toml(doc), 0o644)
    return bundle
