"""The units are ``Type=notify`` with ``WatchdogSec=``: the programs they start must say READY and keep
pinging. Each is run here the way systemd runs it (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``) and the
datagrams are read from a real socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from amgs.broker import free_port

AMGS = str(Path(sys.executable).with_name("amgs"))
WATCHDOG_USEC = 2_000_000


def run_under_notify(args: list[str], tmp_path: Path, timeout: float = 90) -> list[str]:
    """Start ``args`` with a notify socket; return the messages until two WATCHDOG pings, then SIGTERM."""
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(1.0)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    log = open(tmp_path / "service.log", "wb")
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    messages: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and sum("WATCHDOG=1" in m for m in messages) < 2:
            if proc.poll() is not None:
                break
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
    finally:
        proc.terminate()
        rc = proc.wait(60)
        sock.close()
        log.close()
    messages.append(f"exit={rc}")
    return messages


def assert_notify_protocol(messages: list[str], log: Path) -> None:
    text = "\n".join(messages)
    assert any("READY=1" in m for m in messages), (
        f"no READY=1 (systemd would time the start out): {text}\n{log.read_text()[-2000:]}"
    )
    ready = next(i for i, m in enumerate(messages) if "READY=1" in m)
    assert sum("WATCHDOG=1" in m for m in messages[ready:]) >= 2, f"no watchdog pings after READY: {text}"
    assert messages[-1] == "exit=0", f"SIGTERM should stop it cleanly: {text}\n{log.read_text()[-2000:]}"


def test_device_agent_speaks_sd_notify(tmp_path, synth_set):
    frames = sorted(synth_set.rglob("*.jpg"))[:3]
    config = tmp_path / "device.toml"
    config.write_text(
        f'[device]\nid = "box-01"\nsite = "lab1"\nstate_dir = "{tmp_path / "state"}"\n\n'
        "[model]\nallow_synthetic = true\n\n"
        f'[[sources]]\nkind = "folder"\nname = "replay"\npath = "{frames[0].parent}"\nfollow = true\n\n'
        '[[views]]\nname = "v1"\nsource = "replay"\ncage_id = "C1"\n\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\n'  # nothing listens: it keeps retrying
    )
    messages = run_under_notify([AMGS, "device", "run", "--config", str(config)], tmp_path)
    assert_notify_protocol(messages, tmp_path / "service.log")


def test_collector_speaks_sd_notify(tmp_path, broker):
    config = tmp_path / "server.toml"
    config.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n\n[storage]\nstate_dir = "{tmp_path / "state"}"\n\n'
        f'[http]\nbind = "127.0.0.1"\nport = {free_port()}\n'
    )
    messages = run_under_notify([AMGS, "server", "run", "--config", str(config)], tmp_path)
    assert_notify_protocol(messages, tmp_path / "service.log")
