"""Run a local MQTT broker as a child process: Mosquitto when installed, else embedded amqtt.

Used by the demo (``amgs demo``) and by the tests, which need a real broker they can stop and
restart on the same port. Production collector hosts run Mosquitto under systemd instead
(see ``systemd/mosquitto/``).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing is listening on {host}:{port} after {timeout:.0f} s")


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if os.path.exists(p)), None)


def _sets_user(conf: str) -> bool:
    return any(line.split()[:1] == ["user"] for line in conf.splitlines())


class LocalBroker:
    """A broker on 127.0.0.1:``port`` that can be stopped (gracefully or by SIGKILL) and started again.

    ``extra_conf`` lines are appended to the Mosquitto config (e.g. password_file, acl_file, listeners).
    With ``persistence`` the broker keeps retained messages and queued QoS 1 messages across restarts.
    """

    def __init__(
        self,
        port: int | None = None,
        workdir: Path | None = None,
        *,
        persistence: bool = True,
        extra_conf: str = "",
        allow_anonymous: bool = True,
        prefer: str = "mosquitto",
    ) -> None:
        self.port = port or free_port()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="amgs-broker-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.persistence = persistence
        self.extra_conf = extra_conf
        self.allow_anonymous = allow_anonymous
        self.kind = "mosquitto" if prefer == "mosquitto" and mosquitto_path() else "amqtt"
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "broker.log"

    def _mosquitto_conf(self) -> Path:
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            # Mosquitto started as root drops to user "mosquitto", which cannot write our workdir
            # (persistence and log would fail silently); keep the invoking user instead.
            *(
                [f"user {pwd.getpwuid(os.geteuid()).pw_name}"]
                if os.geteuid() == 0 and not _sets_user(self.extra_conf)
                else []
            ),
            "log_type error",
            "log_type warning",
            "log_type notice",
            f"log_dest file {self.log_path}",
        ]
        conf.write_text("\n".join(lines) + "\n" + self.extra_conf + "\n")
        return conf

    def start(self, timeout: float = 10.0) -> LocalBroker:
        if self.proc and self.proc.poll() is None:
            return self
        if self.kind == "mosquitto":
            cmd = [mosquitto_path() or "mosquitto", "-c", str(self._mosquitto_conf())]
        else:
            cmd = [sys.executable, "-m", "amgs.embedded_broker", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=open(self.workdir / "stderr.log", "ab")
        )
        try:
            wait_for_port(self.port, timeout=timeout)
        except TimeoutError:
            self.stop()
            raise RuntimeError(
                f"{self.kind} did not start on port {self.port}: see {self.workdir}/stderr.log and {self.log_path}"
            ) from None
        return self

    def stop(self, kill: bool = False) -> None:
        if not self.proc:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
