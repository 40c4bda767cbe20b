"""Run a message engine as a child process on free ports: NATS (JetStream + MQTT) or a RabbitMQ node.

The scale-out tier (docs/scale-out.md) puts an existing engine between the devices and many collector
workers. The tests, the benchmark (``bench/bench_engines.py``) and a developer trying the topology start
the engines with these classes, the way :class:`amgs.broker.LocalBroker` starts Mosquitto. Production hosts
run the engines under their own packages' systemd units instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from .broker import free_port, wait_for_port


def nats_server_path() -> str | None:
    return shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/local/bin/nats-server") if os.path.exists(p)), None
    )


def rabbitmq_server_path() -> str | None:
    return next(
        (
            p
            for p in ("/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/sbin/rabbitmq-server")
            if os.path.exists(p)
        ),
        None,
    )


class _Child:
    proc: subprocess.Popen | None = None
    workdir: Path

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, kill: bool = False) -> None:
        if not self.proc:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalNats(_Child):
    """nats-server with JetStream and an MQTT 3.1.1 listener for unchanged devices.

    ``domain`` names this server's JetStream domain (a site's, so the centre can source its stream over a
    leaf node); ``leaf_listen`` opens a leaf-node port (the centre); ``leaf_remotes`` are leaf-node URLs
    this server connects to (a site connecting to the centre). ``netns`` runs it in a network namespace
    (the tests' site-to-centre link), listening on ``bind``.
    """

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        name: str = "amgs",
        port: int | None = None,
        mqtt_port: int | None = None,
        domain: str | None = None,
        leaf_listen: bool = False,
        leaf_port: int | None = None,
        leaf_remotes: list[str] | None = None,
        mqtt: bool = True,
        bind: str = "127.0.0.1",
        netns: str | None = None,
    ) -> None:
        self.bind = bind
        self.netns = netns
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="amgs-nats-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = port or free_port()
        self.mqtt_port = (mqtt_port or free_port()) if mqtt else None
        self.domain = domain
        self.leaf_port = (leaf_port or free_port()) if leaf_listen else None
        self.leaf_remotes = list(leaf_remotes or [])
        self.log_path = self.workdir / "nats.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _conf(self) -> Path:
        js = [f'store_dir: "{self.workdir / "js"}"']
        if self.domain:
            js.append(f"domain: {self.domain}")
        lines = [
            f"server_name: {self.name}",
            f"listen: {self.bind}:{self.port}",
            "jetstream {",
            *(f"  {x}" for x in js),
            "}",
        ]
        if self.mqtt_port:
            # ack_wait: how long a device's unacknowledged QoS 1 delivery (its watermarks) waits for redelivery
            lines += ["mqtt {", f"  listen: {self.bind}:{self.mqtt_port}", "  ack_wait: 10s", "}"]
        if self.leaf_port or self.leaf_remotes:
            lines.append("leafnodes {")
            if self.leaf_port:
                lines.append(f"  listen: {self.bind}:{self.leaf_port}")
            if self.leaf_remotes:
                lines.append("  reconnect: 1")
                lines.append("  remotes: [" + ", ".join(f'{{url: "{u}"}}' for u in self.leaf_remotes) + "]")
            lines.append("}")
        conf = self.workdir / "nats.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, timeout: float = 20.0) -> LocalNats:
        if self.running:
            return self
        exe = nats_server_path()
        if exe is None:
            raise RuntimeError("nats-server is not installed (apt-get install nats-server)")
        self.log_path.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            (["ip", "netns", "exec", self.netns] if self.netns else [])
            + [exe, "-c", str(self._conf()), "-l", str(self.log_path)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.workdir / "stderr.log", "ab"),
            start_new_session=True,
        )
        try:
            if self.netns:  # its ports are in another network namespace: wait for its log to say ready
                deadline = time.monotonic() + timeout
                while "Server is ready" not in (self.log_path.read_text() if self.log_path.exists() else ""):
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise TimeoutError
                    time.sleep(0.05)
            else:
                wait_for_port(self.port, timeout=timeout)
                if self.mqtt_port:
                    wait_for_port(self.mqtt_port, timeout=timeout)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"nats-server did not start: see {self.log_path}") from None
        return self

    def __enter__(self) -> LocalNats:
        return self.start()


class LocalRabbit(_Child):
    """A RabbitMQ node of its own (name, ports, data folder) with the MQTT plugin on; quorum queues for MQTT.

    Starting one takes 10-40 s (Erlang): the benchmark uses it, the test suite does not.
    """

    def __init__(self, workdir: Path | None = None, *, name: str | None = None) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="amgs-rabbit-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.mqtt_port = free_port()
        self.dist_port = free_port()
        self.node = f"{name or 'amgs' + str(self.port)}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def start(self, timeout: float = 120.0) -> LocalRabbit:
        if self.running:
            return self
        exe = rabbitmq_server_path()
        if exe is None:
            raise RuntimeError("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        (self.workdir / "plugins").write_text("[rabbitmq_mqtt].\n")
        (self.workdir / "env.conf").write_text("")
        (self.workdir / "rabbit.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            f"mqtt.listeners.tcp.default = 127.0.0.1:{self.mqtt_port}\n"
            "mqtt.allow_anonymous = true\n"
            "mqtt.durable_queue_type = quorum\n"
            "loopback_users = none\n"
        )
        env = dict(
            os.environ,
            HOME=str(self.workdir),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_CONF_ENV_FILE=str(self.workdir / "env.conf"),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.workdir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.workdir / "log"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.workdir / "plugins"),
            RABBITMQ_CONFIG_FILE=str(self.workdir / "rabbit.conf"),
            RABBITMQ_PID_FILE=str(self.workdir / "pid"),
        )
        self.proc = subprocess.Popen(
            [exe],
            env=env,
            stdout=open(self.workdir / "stdout.log", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        try:
            wait_for_port(self.port, timeout=timeout)
            wait_for_port(self.mqtt_port, timeout=max(1.0, deadline - time.monotonic()))
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"rabbitmq did not start: see {self.workdir}/stdout.log") from None
        return self

    def __enter__(self) -> LocalRabbit:
        return self.start()
