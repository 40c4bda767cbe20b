"""The systemd units: they verify, their hardening rates OK or better, and it does not break the runtime.

``systemd-analyze verify`` needs the ExecStart binary to exist, so the units are checked with their
``/opt/amgs/venv/bin/amgs`` path pointed at this checkout's ``amgs``; nothing else is changed.
"""

from __future__ import annotations

import configparser
import ctypes
import errno
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNITS = {
    name: REPO / "systemd" / f"{name}.service" for name in ("amgs-device", "amgs-collector", "amgs-worker@")
}
INSTALLED_AMGS = "/opt/amgs/venv/bin/amgs"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze not installed (scripts/setup.sh test --system-packages)"
)


def service(name: str) -> dict[str, list[str]]:
    """The [Service] section, every value of repeated keys kept."""
    values: dict[str, list[str]] = {}
    section = None
    for line in UNITS[name].read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@pytest.fixture(scope="module")
def checkable_units(tmp_path_factory) -> dict[str, Path]:
    amgs = Path(sys.executable).with_name("amgs")
    assert amgs.exists(), f"{amgs} missing: install the project into the venv"
    out = tmp_path_factory.mktemp("units")
    units = {}
    for name, path in UNITS.items():
        text = path.read_text()
        assert INSTALLED_AMGS in text
        units[name] = out / path.name.replace(
            "@.service", "@1.service"
        )  # a template is checked as an instance
        units[name].write_text(text.replace(INSTALLED_AMGS, str(amgs)))
    return units


@needs_analyze
@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_passes_systemd_analyze_verify(checkable_units, name):
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(checkable_units[name])], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0 and "Failed to" in proc.stderr and "bus" in proc.stderr.lower():
        pytest.skip(f"systemd-analyze cannot run in this container: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", f"warnings: {proc.stderr}"


@needs_analyze
@pytest.mark.parametrize("name", sorted(UNITS))
def test_unit_exposure_is_ok_or_better(checkable_units, name):
    proc = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(checkable_units[name])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "--offline" in proc.stderr or "unrecognized option" in proc.stderr:
        pytest.skip("this systemd-analyze has no --offline (needs systemd >= 252)")
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", proc.stdout)
    assert m, proc.stdout[-500:] + proc.stderr
    exposure, level = float(m.group(1)), m.group(2)
    assert level in {"PERFECT", "SAFE", "OK"}, f"{name}: {exposure} {level}"
    # docs/deployment.md reports the same figure.
    assert f"{name}.service | {exposure} {level}" in (REPO / "docs" / "deployment.md").read_text()


def test_device_unit_is_a_watched_notify_service_that_can_see_the_camera():
    s = service("amgs-device")
    assert s["Type"] == ["notify"]
    assert int(s["WatchdogSec"][0]) > 0
    assert s["Restart"] == ["on-failure"]
    assert "video" in s["SupplementaryGroups"][0].split()
    assert "PrivateDevices" not in s, "PrivateDevices= hides the camera and the USB accelerator"
    allowed = {v.split()[0] for v in s["DeviceAllow"]}
    assert {"char-video4linux", "char-usb_device"} <= allowed
    assert s["StateDirectory"] == ["amgs-device"]
    assert s["ExecStart"] == [f"{INSTALLED_AMGS} device run --config /etc/amgs/device.toml"]


def test_device_unit_keeps_the_proc_files_the_agent_reads():
    """The agent reads the boot id from /proc/sys; ProcSubset=pid would hide it."""
    from amgs.device import health

    assert str(health.BOOT_ID_PATH).startswith("/proc/sys/")
    assert "ProcSubset" not in service("amgs-device")


def test_collector_unit_state_directory_is_the_configured_state_dir():
    from amgs.server.config import StorageConfig

    s = service("amgs-collector")
    assert s["Type"] == ["notify"] and int(s["WatchdogSec"][0]) > 60  # the collector's own stuck-writer limit
    assert Path("/var/lib") / s["StateDirectory"][0] == StorageConfig().state_dir
    assert s["ExecStart"] == [f"{INSTALLED_AMGS} server run --config /etc/amgs/server.toml"]
    assert "mosquitto.service" in (UNITS["amgs-collector"].read_text())


@pytest.mark.parametrize(("part", "command"), [("device", "run"), ("server", "run")])
def test_execstart_command_exists_with_config_option(part, command):
    import click

    from amgs.cli import main

    ctx = click.Context(main)
    group = main.get_command(ctx, part)
    if group is None:
        pytest.skip(f"`amgs {part}` is not in this checkout yet")
    cmd = group.get_command(ctx, command)
    assert cmd is not None, f"`amgs {part} {command}` missing: the unit's ExecStart would fail"
    assert "--config" in {o for p in cmd.params for o in p.opts}


def test_worker_unit_is_a_template_of_the_collector_unit_with_its_own_config_and_state():
    """Several workers per host: each instance its own config file and state directory, the same hardening."""
    w, c = service("amgs-worker@"), service("amgs-collector")
    assert w["ExecStart"] == [f"{INSTALLED_AMGS} server run --config /etc/amgs/worker-%i.toml"]
    assert w["StateDirectory"] == ["amgs-worker/%i"]
    assert "nats-server.service" in UNITS["amgs-worker@"].read_text()
    same = {k: v for k, v in c.items() if k not in ("ExecStart", "StateDirectory")}
    assert {k: w.get(k) for k in same} == same


def test_units_parse_as_ini():
    for path in UNITS.values():
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read_string(path.read_text())
        assert {"Unit", "Service", "Install"} <= set(parser.sections())


def _mdwe_supported() -> bool:
    """Linux >= 6.3 refuses W+X memory for a process on request (PR_SET_MDWE), as MemoryDenyWriteExecute does."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(66, 0, 0, 0, 0) >= 0 or ctypes.get_errno() != errno.EINVAL  # PR_GET_MDWE


MDWE_PRELUDE = textwrap.dedent(
    """
    import ctypes, sys
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        sys.exit(f"PR_SET_MDWE failed: errno {ctypes.get_errno()}")
    # what TFLite's load_delegate (Edge TPU) does: a ctypes callback needs a closure trampoline
    ctypes.CFUNCTYPE(None, ctypes.c_char_p)(lambda s: None)(b"x")
    """
)


@pytest.mark.skipif(not _mdwe_supported(), reason="kernel has no PR_SET_MDWE (Linux >= 6.3)")
def test_device_runtime_works_under_memory_deny_write_execute(tmp_path, synth_set, model_path):
    """MemoryDenyWriteExecute=yes is in the device unit: the real inference path must run under it."""
    script = MDWE_PRELUDE + textwrap.dedent(
        f"""
        import cv2, paho.mqtt.client, ssl, sqlite3
        from amgs.runtime import Model
        from amgs.scoring import Scorer
        scorer = Scorer(Model({str(model_path)!r}, num_threads=1))
        files = sorted(__import__("pathlib").Path({str(synth_set)!r}).rglob("*.jpg"))[:2]
        for f in files:
            r = scorer.score(f)
            assert 0 <= r.p_pain <= 1
        print("scored", len(files))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "scored 2" in proc.stdout


@pytest.mark.skipif(not _mdwe_supported(), reason="kernel has no PR_SET_MDWE (Linux >= 6.3)")
def test_collector_stack_imports_under_memory_deny_write_execute(tmp_path):
    script = MDWE_PRELUDE + textwrap.dedent(
        f"""
        import fastapi, uvicorn, jinja2, sqlite_utils, paho.mqtt.client, pydantic, argon2
        db = sqlite_utils.Database({str(tmp_path / "x.db")!r})
        db["t"].insert({{"a": 1}})
        argon2.PasswordHasher().hash("x")
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
