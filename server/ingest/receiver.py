"""The collector's MQTT receiver process: paho on one core, the single writer on another.

Parsing MQTT packets in paho costs about as much CPU per score as validating and storing it, and one
Python process runs Python code on one core at a time; with both in one process the collector topped
out near 8,000 scores/s. So :class:`ReceiverProcess` (in the collector) starts
``python -m amgs.server.ingest.receiver`` and talks to it over a socket pair, pickled messages in both
directions (``multiprocessing.connection.Connection``)::

    collector -> receiver   setup {config, first_generation, log_level}   (first message)
                            ("ack", [(mid, qos, generation), ...])        one per committed batch
                            ("publish", topic, payload, qos, retain)
                            ("stop",)
    receiver -> collector   ("state", (connected, generation, last_error))
                            ("in", [Incoming, ...])   (a NamedTuple: pickled as itself)

The no-loss rule is unchanged: a message is PUBACKed only after the writer committed it, on the
connection it came on. If the receiver dies, the collector starts a new one (its connections get new
generation numbers, so late acks for the dead one's messages are dropped and the broker redelivers
them); if the collector dies, the receiver sees end-of-file and exits without acknowledging anything.
The receiver ignores SIGINT and SIGTERM: it stops when the collector says so or goes away.
"""

from __future__ import annotations

import collections
import logging
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from .incoming import Incoming

log = logging.getLogger(__name__)

FORWARD_MAX = 1000
"""Messages per pickled batch from the receiver to the collector."""
GENERATIONS_PER_RECEIVER = 1 << 32
"""Each receiver numbers its connections from ``restarts * GENERATIONS_PER_RECEIVER``: never reused."""
PENDING_PUBLISH_MAX = 10_000
"""Publishes held while no receiver runs (watermarks, crop requests); the oldest are dropped beyond."""


class ReceiverProcess:
    """The collector's side: starts and supervises the receiver, feeds ``inbox``, forwards acks and publishes.

    Same interface the writer, jobs and HTTP side use: ``connected``, ``generation``, ``ack_many``,
    ``publish``, ``describe``, ``start``, ``stop``.
    """

    def __init__(self, config, inbox: queue.Queue, stats=None) -> None:
        from .mqtt import check_settings

        check_settings(config)  # fail here, with the file named, not in a receiver that dies again and again
        self.config = config
        self.inbox = inbox
        self.stats = stats
        self.connected = threading.Event()
        self.generation = 0
        self.last_error: str | None = None
        self.dropped_qos0 = 0
        self.restarts = 0
        self.pid: int | None = None
        self._conn: Connection | None = None
        self._proc: subprocess.Popen | None = None
        self._send_lock = threading.Lock()
        self._pending: collections.deque = collections.deque(maxlen=PENDING_PUBLISH_MAX)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at = 0.0
        self._backoff = 0.5  # doubled before each restart of a receiver that lived under a minute

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(target=self._supervise, name="amgs-receiver-link", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            proc = subprocess.Popen(
                [sys.executable, "-m", "amgs.server.ingest.receiver", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                # its own process group: a terminal's Ctrl-C or a group SIGTERM cannot kill it before it
                # has set its signals to ignore (the collector stops it after the last commit)
                start_new_session=True,
            )
        conn = Connection(ours.detach())
        conn.send(
            {
                "config": self.config,
                "first_generation": self.restarts * GENERATIONS_PER_RECEIVER,
                "log_level": logging.getLogger().getEffectiveLevel(),
            }
        )
        with self._send_lock:
            self._proc, self._conn, self.pid = proc, conn, proc.pid
            self._started_at = time.monotonic()
            while self._pending:
                conn.send(self._pending.popleft())
            if self._stopping.is_set():  # stop() came while this one was starting
                conn.send(("stop",))
        log.info("MQTT receiver process %d started", proc.pid)

    def _supervise(self) -> None:
        """Read what the receiver sends; start a new receiver whenever one dies."""
        while not self._stopping.is_set():
            try:
                kind, body = self._conn.recv()
            except (EOFError, OSError):
                if self._stopping.is_set():
                    break
                self._receiver_died()
                continue
            if kind == "in":
                self._enqueue(body)
            elif kind == "state":
                connected, generation, last_error = body
                self.generation, self.last_error = generation, last_error
                (self.connected.set if connected else self.connected.clear)()

    def _enqueue(self, items: list[Incoming]) -> None:
        queue_max = self.config.ingest.queue_max
        for item in items:
            if item.qos == 0 and self.inbox.qsize() >= queue_max:
                self.dropped_qos0 += 1  # crops are best effort; scores (QoS 1) are bounded by receive_maximum
                continue
            self.inbox.put(item)
        if self.stats is not None:
            self.stats.received += len(items)

    def _receiver_died(self) -> None:
        self.connected.clear()
        with self._send_lock:
            self._conn.close()
            self._conn = None
        code = self._proc.wait()
        self.restarts += 1
        lived = time.monotonic() - self._started_at
        self._backoff = 1.0 if lived > 60 else min(30.0, self._backoff * 2)
        self.last_error = f"the MQTT receiver process exited with code {code}; starting a new one"
        log.error("%s in %.0f s (restart %d)", self.last_error, self._backoff, self.restarts)
        while not self._stopping.wait(self._backoff):
            try:
                self._spawn()
                return
            except OSError as e:
                log.error("cannot start the MQTT receiver process: %s; retrying", e)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._send(("stop",))
        if self._proc is not None:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("the MQTT receiver did not stop in %.0f s; killing it", timeout)
                self._proc.kill()
                self._proc.wait()
        with self._send_lock:
            if self._conn is not None:
                self._conn.close()
        self.connected.clear()

    # ---------------------------------------------------------------- called by the writer and jobs

    def _send(self, message: tuple, keep: bool = False) -> None:
        """Send to the receiver; when none runs, ``keep`` holds the message for the next one."""
        with self._send_lock:
            if self._conn is not None:
                try:
                    self._conn.send(message)
                    return
                except OSError:
                    pass  # the receiver is gone; _supervise notices and starts a new one
            if keep:
                self._pending.append(message)

    def ack_many(self, acks: list[tuple[int, int, int]]) -> None:
        """PUBACK committed messages; acks for a dead receiver's connection are moot (redelivered)."""
        if acks:
            self._send(("ack", acks))

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self._send(("publish", topic, payload, qos, retain), keep=True)

    def describe(self) -> dict[str, Any]:
        mqtt = self.config.mqtt
        return {
            "host": mqtt.host,
            "port": mqtt.port,
            "connected": self.connected.is_set(),
            "last_error": self.last_error,
            "dropped_qos0": self.dropped_qos0,
            "receiver_pid": self.pid,
            "receiver_restarts": self.restarts,
        }


# -------------------------------------------------------------------- the receiver process


class _Mailbox:
    """What paho's ``on_message`` puts into (the ``inbox`` of MqttIngest): a deque and a wake-up flag,
    cheaper per message than ``queue.Queue``, which the forwarder empties in one go."""

    def __init__(self) -> None:
        self.items: collections.deque = collections.deque()
        self.ready = threading.Event()

    def put(self, item) -> None:
        self.items.append(item)
        if not self.ready.is_set():
            self.ready.set()

    def take(self, timeout: float, limit: int) -> list:
        if not self.items:
            self.ready.wait(timeout)
        self.ready.clear()
        taken = []
        while self.items and len(taken) < limit:
            taken.append(self.items.popleft())
        return taken


def _forward(ingest, mailbox: _Mailbox, conn: Connection) -> None:
    """Send state changes and received messages to the collector, batched by what has piled up."""
    last_state = None
    while True:
        state = ingest.state()
        if state != last_state:
            conn.send(("state", state))
            last_state = state
        items = mailbox.take(0.05, FORWARD_MAX)
        if items:
            conn.send(("in", items))


def serve(conn: Connection) -> int:
    """The receiver's main loop: obey the collector until it says stop or goes away."""
    from .mqtt import MqttIngest

    # Ctrl-C in a terminal and systemd's stop signal reach the whole process group: the receiver leaves
    # stopping to the collector, which first commits and acknowledges what it holds.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    setup = conn.recv()
    logging.basicConfig(
        level=setup["log_level"], format="%(asctime)s %(levelname)s %(name)s[receiver]: %(message)s"
    )
    mailbox = _Mailbox()
    ingest = MqttIngest(setup["config"], mailbox, first_generation=setup["first_generation"])
    ingest.start()
    forwarder = threading.Thread(target=_forward, args=(ingest, mailbox, conn), name="forward", daemon=True)
    forwarder.start()
    try:
        while True:
            kind, *args = conn.recv()
            if kind == "ack":
                ingest.ack_many(args[0])
            elif kind == "publish":
                ingest.publish(*args)
            elif kind == "stop":
                break
    except (EOFError, OSError):
        log.warning("the collector went away: disconnecting; the broker redelivers what was not acknowledged")
    finally:
        ingest.stop()  # PUBACKs queued before are written before the DISCONNECT
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print(
            "usage: python -m amgs.server.ingest.receiver FD (started by the collector, not by hand)",
            file=sys.stderr,
        )
        return 2
    return serve(Connection(int(argv[0])))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
