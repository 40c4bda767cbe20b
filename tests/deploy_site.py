"""A real aMGS site in a temp folder, for the deployment, security and network-fault tests.

It uses the shipped parts exactly as the installer does: ``scripts/make-ca.sh`` makes the CA and the
broker certificate, ``systemd/mosquitto/amgs.conf`` is included by a Debian-like main config (only its
/etc paths and ports are rewritten), and ``amgs provision`` writes the password and ACL files. When the
tests run as root, Mosquitto drops to its own user as on a real host, so file permissions are tested too.
"""

from __future__ import annotations

import os
import pwd
import queue
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion

from amgs.broker import free_port, mosquitto_path, wait_for_port

REPO = Path(__file__).resolve().parents[1]
SHIPPED_CONF = REPO / "systemd" / "mosquitto" / "amgs.conf"
MAKE_CA = REPO / "scripts" / "make-ca.sh"
IS_ROOT = os.geteuid() == 0


def _mosquitto_user() -> str | None:
    try:
        return pwd.getpwnam("mosquitto").pw_name if IS_ROOT else None
    except KeyError:
        return None


def rewrite_conf(text: str, etc: Path, plain_port: int, tls_port: int) -> str:
    """The shipped config with its /etc paths and ports moved; fails if the config changed shape."""
    swaps = {
        "/etc/mosquitto/amgs/": f"{etc}/",
        "\nlistener 1883 127.0.0.1\n": f"\nlistener {plain_port} 127.0.0.1\n",
        "\nlistener 8883\n": f"\nlistener {tls_port}\n",
    }
    for old, new in swaps.items():
        if old not in text:
            raise AssertionError(f"shipped mosquitto config no longer contains {old!r}")
        text = text.replace(old, new)
    return text


def make_ca(out: Path, *names: str) -> None:
    subprocess.run(["bash", str(MAKE_CA), "--dir", str(out), *names], check=True, capture_output=True)


@dataclass
class Site:
    """CA, broker config and provisioning config under ``root``; ``start()`` runs Mosquitto."""

    root: Path
    site: str = "lab1"
    host: str = "localhost"
    san: tuple[str, ...] = ("127.0.0.1",)
    plain_port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    netns: str | None = None
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)  # the broker's own user must reach its files, as under /etc
        self.etc = self.root / "etc-mosquitto-amgs"
        self.certs = self.etc / "certs"
        self.data = self.root / "data"
        self.state = self.root / "provision"
        self.amgs_etc = self.root / "etc-amgs"
        for d in (self.etc, self.data, self.amgs_etc):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o755)
        user = _mosquitto_user()
        if user:
            shutil.chown(self.data, user)
        make_ca(self.certs, self.host, *self.san)
        conf_d = self.root / "conf.d"
        conf_d.mkdir(exist_ok=True)
        (conf_d / "amgs.conf").write_text(
            rewrite_conf(SHIPPED_CONF.read_text(), self.etc, self.plain_port, self.tls_port)
        )
        self.pid_file = self.data / "mosquitto.pid"  # like /run/mosquitto: owned by the broker
        self.log = self.root / "mosquitto.log"
        self.log.touch()
        if user:
            shutil.chown(self.log, user)
        # Debian's /etc/mosquitto/mosquitto.conf, with the temp paths.
        (self.root / "mosquitto.conf").write_text(
            f"pid_file {self.pid_file}\npersistence true\npersistence_location {self.data}/\n"
            f"log_dest file {self.log}\ninclude_dir {conf_d}\n"
        )
        hup = f"test ! -s {self.pid_file} || kill -HUP $(cat {self.pid_file})"
        self.config_path = self.amgs_etc / "provision.toml"
        self.config_path.write_text(
            f'site = "{self.site}"\nbroker_host = "{self.host}"\nbroker_port = {self.tls_port}\n'
            f'password_file = "{self.etc}/passwd"\nacl_file = "{self.etc}/acl"\n'
            f'ca_cert = "{self.certs}/ca.crt"\nstate_dir = "{self.state}"\n'
            f'collector_password_file = "{self.amgs_etc}/collector-mqtt-password"\n'
            f'alerts_password_file = "{self.amgs_etc}/collector-alerts-mqtt-password"\n'
            f'server_config = "{self.amgs_etc}/server.toml"\n'
            f'reload_command = ["sh", "-c", "{hup}"]\n'
            f'broker_group = "{"mosquitto" if user else ""}"\ncollector_group = ""\n'
        )

    # ------------------------------------------------------------------ provisioning
    def provision(self, *args: str):
        from amgs.deploy.provision import cli

        result = CliRunner().invoke(cli, ["--config", str(self.config_path), *args], catch_exceptions=False)
        return result

    def password(self, device: str) -> str:
        return (self.state / "bundles" / device / "mqtt-password").read_text().strip()

    def collector_password(self) -> str:
        return (self.amgs_etc / "collector-mqtt-password").read_text().strip()

    @property
    def ca(self) -> Path:
        return self.certs / "ca.crt"

    # ------------------------------------------------------------------ broker
    def start(self) -> Site:
        exe = mosquitto_path()
        assert exe, "mosquitto is not installed"
        cmd = [exe, "-c", str(self.root / "mosquitto.conf")]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        self.pid_file.unlink(missing_ok=True)
        with open(self.root / "stderr.log", "ab") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
        if self.netns is None:
            try:
                wait_for_port(self.plain_port)
                wait_for_port(self.tls_port)
            except TimeoutError:
                self.stop(kill=True)
                raise RuntimeError(
                    f"mosquitto did not start: {self.log.read_text()[-1500:]} {(self.root / 'stderr.log').read_text()}"
                ) from None
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.proc.wait(15)
        self.proc = None

    def reloaded(self, after: float = 0.5) -> None:
        """Give the broker time to act on a SIGHUP sent by provisioning."""
        time.sleep(after)


class Client:
    """A paho MQTT v5 client whose callbacks only enqueue; the test reads the queues."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        *,
        ca: Path | None = None,
        client_id: str | None = None,
        host: str = "localhost",
    ) -> None:
        self.host, self.port = host, port
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or username or "", protocol=mqtt.MQTTv5
        )
        if username is not None:
            self.c.username_pw_set(username, password)
        if ca is not None:
            self.c.tls_set(ca_certs=str(ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        self.connacks: queue.Queue = queue.Queue()
        self.messages: queue.Queue = queue.Queue()
        self.subacks: queue.Queue = queue.Queue()
        self.pubacks: dict[int, object] = {}
        self.puback_q: queue.Queue = queue.Queue()
        self.disconnects: queue.Queue = queue.Queue()
        self.c.on_connect = lambda c, u, f, rc, p: self.connacks.put(rc)
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.retain))
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put(list(rcs))
        self.c.on_publish = lambda c, u, mid, rc, p: self.puback_q.put((mid, rc))
        self.c.on_disconnect = lambda c, u, f, rc, p: self.disconnects.put(rc)

    def connect(self, timeout: float = 10):
        """Connect and return the CONNACK reason code (raises ssl errors from the handshake)."""
        self.c.reconnect_delay_set(60, 120)  # no automatic reconnects during a test
        self.c.connect(self.host, self.port, keepalive=30)
        self.c.loop_start()
        try:
            return self.connacks.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no CONNACK from {self.host}:{self.port} in {timeout} s") from None

    def subscribe(self, topic: str, timeout: float = 10) -> list:
        self.c.subscribe(topic, qos=1)
        return self.subacks.get(timeout=timeout)

    def publish(self, topic: str, payload: bytes | str, retain: bool = False, timeout: float = 10):
        """Publish at QoS 1 and return the PUBACK reason code."""
        info = self.c.publish(topic, payload, qos=1, retain=retain)
        while True:
            mid, rc = self.puback_q.get(timeout=timeout)
            if mid == info.mid:
                return rc

    def wait_for(self, topics: set[str], timeout: float = 15.0) -> list[tuple[str, bytes, bool]]:
        """Messages received until every topic in ``topics`` has been seen (fails after ``timeout``)."""
        out: list[tuple[str, bytes, bool]] = []
        deadline = time.monotonic() + timeout
        while not topics <= {t for t, _, _ in out}:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"never received {topics - {t for t, _, _ in out}}; got {out}")
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                continue
        return out

    def drain(self, wait: float = 1.0) -> list[tuple[str, bytes, bool]]:
        """Messages received within ``wait`` seconds of the last one."""
        out = []
        while True:
            try:
                out.append(self.messages.get(timeout=wait))
            except queue.Empty:
                return out

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def new_site_root(prefix: str = "amgs-site-") -> Path:
    """A folder the broker's user can traverse (pytest's tmp_path parents are 0700)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


# ---------------------------------------------------------------------- the collector and devices as processes


def write_server_toml(site: Site, state_dir: Path, http_port: int, extra: str = "") -> Path:
    """The collector's config as install-collector.sh writes it, with this site's ports and folders."""
    path = site.amgs_etc / "server.toml"
    path.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {site.plain_port}\nusername = "collector"\n'
        f'password_file = "{site.amgs_etc}/collector-mqtt-password"\nsite = "{site.site}"\n\n'
        f'[notify.mqtt]\nusername = "collector-alerts"\n'
        f'password_file = "{site.amgs_etc}/collector-alerts-mqtt-password"\n\n'
        f'[storage]\nstate_dir = "{state_dir}"\n\n[http]\nbind = "127.0.0.1"\nport = {http_port}\n\n{extra}'
    )
    return path


class Proc:
    """A child process (optionally inside a network namespace) logging to a file."""

    def __init__(self, args: list[str], log: Path, netns: str | None = None, env: dict | None = None) -> None:
        self.args = (["ip", "netns", "exec", netns] if netns else []) + args
        self.log = log
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.args, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )
        return self

    def stop(self, kill: bool = False, timeout: float = 30) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        rc, self.proc = self.proc.returncode, None
        return rc

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


def wait_until(check, timeout: float, what: str, interval: float = 0.2, proc: Proc | None = None):
    """Poll ``check()`` until it returns something truthy; fail naming ``what`` (and the process log)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if proc is not None and not proc.alive:
            raise AssertionError(f"{what}: the process exited:\n{proc.tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s\n{proc.tail() if proc else ''}")
        time.sleep(interval)


def collector_subscribed(base: str) -> bool:
    """The collector answers and its MQTT subscription is in place (a new session queues nothing before)."""
    from server_support import get_json

    try:
        return bool(get_json(f"{base}/healthz")["mqtt"]["connected"])
    except (OSError, ValueError, KeyError):
        return False


def score_message(device: str, site: str, cage: str, seq: int, p_pain: float = 0.2) -> dict:
    """A valid amgs.score/1 record (checked by the contract's own encoder)."""
    from amgs import contract

    msg = {
        "schema": "amgs.score/1",
        "msg_id": contract.new_msg_id(),
        "seq": seq,
        "device_id": device,
        "site": site,
        "cage_id": cage,
        "captured_at": contract.utc_now(),
        "clock": {"synced": True, "boot_id": "test-boot", "monotonic_s": float(seq)},
        "model": {"name": "test", "version": "1", "sha256": "0" * 64},
        "p_pain": p_pain,
        "label": "pain" if p_pain >= 0.5 else "no pain",
        "amgs": p_pain,
        "confidence": max(p_pain, 1 - p_pain),
        "needs_review": False,
    }
    contract.encode(msg)
    return msg
