"""A collector worker's receiver on NATS JetStream: one of many workers sharing a durable pull consumer.

Devices do not change: they speak MQTT 3.1.1 to the NATS server's MQTT listener, which turns
``amgs/v1/{site}/{device}/score`` into the subject ``amgs.v1.{site}.{device}.score``. A JetStream stream
(file storage, kept ``stream.max_age_days``) captures the device subjects; every collector worker binds to
the same durable pull consumer, so each message goes to one worker. The no-loss rule is the collector's:
a worker acknowledges a message only after its batch committed; a message not acknowledged within
``stream.ack_wait_s`` (the worker died, hung, or its commit keeps failing) is delivered again, to any worker,
and the idempotent insert by ``msg_id`` makes a second copy harmless.

Watermarks and commands go to devices as MQTT messages (retained watermarks) through the same server's
MQTT listener (``[mqtt]`` host/port), from a publish-only MQTT client per worker. A centre that copies
sites' streams (``stream.sources``) sets ``publish_to_devices = false``: the site collector owns them.

:class:`JetStreamReceiver` has the interface the writer, jobs and HTTP side use from
:class:`~amgs.server.ingest.receiver.ReceiverProcess`: ``connected``, ``generation``, ``ack_many``,
``publish``, ``describe``, ``start``, ``stop``, and ``state`` of :class:`~amgs.server.ingest.mqtt.MqttIngest`:
the collector runs it in its receiver process (``receiver.serve`` picks it by ``[stream] engine``), so
nats-py's asyncio loop has a core of its own, as paho has; it also works in-process (tests).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from typing import Any

from amgs.contract import TOPIC_ROOT

from .classify import Incoming

log = logging.getLogger(__name__)

DEVICE_KINDS = ("score", "status", "crop.*")
"""The device-published subjects the stream captures (``amgs.v1.{site}.{device}.{kind}``)."""


def stream_subjects(site: str) -> list[str]:
    """JetStream subjects for ``[mqtt] site`` ('+' = every site): MQTT '/' is NATS '.', '+' is '*'."""
    root = TOPIC_ROOT.replace("/", ".")
    s = "*" if site == "+" else site
    return [f"{root}.{s}.*.{kind}" for kind in DEVICE_KINDS]


def topic_of(subject: str) -> str:
    """The MQTT topic of a device subject (ids cannot hold '.' on NATS 2.9's MQTT listener)."""
    return subject.replace(".", "/")


def is_device_topic(topic: str) -> bool:
    """Watermarks and commands: ``amgs/v1/{site}/{device}/ack|command``."""
    parts = topic.split("/")
    return topic.startswith(TOPIC_ROOT + "/") and len(parts) == 5 and parts[4] in ("ack", "command")


async def ensure_stream(js, cfg, site: str) -> None:
    """Create the stream and the durable consumer, or bring their settings up to date."""
    from nats.js.api import (
        AckPolicy,
        ConsumerConfig,
        DeliverPolicy,
        ExternalStream,
        RetentionPolicy,
        StorageType,
        StreamConfig,
        StreamSource,
    )
    from nats.js.errors import NotFoundError

    sources = [
        StreamSource(name=cfg.stream, external=ExternalStream(api=f"$JS.{domain}.API"))
        for domain in cfg.sources
    ]
    wanted = StreamConfig(
        name=cfg.stream,
        subjects=[] if sources else stream_subjects(site),
        sources=sources or None,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=cfg.max_age_days * 86400,
        num_replicas=cfg.replicas,
        duplicate_window=120,
    )
    try:
        await js.stream_info(cfg.stream)
        await js.update_stream(wanted)
    except NotFoundError:
        await js.add_stream(wanted)
    await js.add_consumer(
        cfg.stream,
        ConsumerConfig(
            durable_name=cfg.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,  # never AckAll: with many workers it would acknowledge others' messages
            ack_wait=cfg.ack_wait_s,
            max_ack_pending=cfg.max_ack_pending,
            max_waiting=512,
        ),
    )


class JetStreamReceiver:
    """Pulls from the shared durable consumer into ``inbox``; acknowledges what the writer committed."""

    def __init__(self, config, inbox, stats=None, first_generation: int = 0) -> None:
        import nats  # noqa: F401  (fail at construction, with the extra named, not in the thread)

        self.config = config
        self.cfg = config.stream
        self.inbox = inbox
        self.stats = stats
        self.connected = threading.Event()
        self.generation = first_generation
        self.last_error: str | None = None
        self.redelivered = 0
        self.dropped_to_devices = 0
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}"
        self._msgs: dict[int, Any] = {}
        self._next_mid = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._nats_ready = False
        self._publisher = None
        self._mqtt_ready = threading.Event()

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self.cfg.publish_to_devices:
            self._start_publisher()
        else:
            self._mqtt_ready.set()
        self._thread = threading.Thread(target=self._run, name="amgs-jetstream", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._publisher is not None:
            self._publisher.disconnect()
            self._publisher.loop_stop()
        self.connected.clear()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    def _state(self) -> None:
        ok = self._nats_ready and self._mqtt_ready.is_set()
        (self.connected.set if ok else self.connected.clear)()

    async def _main(self) -> None:
        import nats

        async def disconnected():
            self._nats_ready = False
            self._state()
            self.last_error = "disconnected from NATS; reconnecting"
            log.warning("%s", self.last_error)

        async def reconnected():
            self.generation += 1
            self.last_error = None
            self._nats_ready = True
            self._state()
            log.info("reconnected to NATS")

        async def error(e):
            self.last_error = f"NATS: {e}"

        opts: dict[str, Any] = {
            "servers": [u.strip() for u in self.cfg.url.split(",")],
            "name": f"amgs-collector-{self.worker_id}",
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 1,
            "allow_reconnect": True,
            "disconnected_cb": disconnected,
            "reconnected_cb": reconnected,
            "error_cb": error,
        }
        if self.cfg.creds_file:
            opts["user_credentials"] = str(self.cfg.creds_file)
        nc = sub = None
        while not self._stopping.is_set():
            try:
                if nc is None:
                    nc = await nats.connect(**opts)
                js = nc.jetstream()
                if self.cfg.create:
                    await ensure_stream(js, self.cfg, self.config.mqtt.site)
                sub = await js.pull_subscribe_bind(durable=self.cfg.durable, stream=self.cfg.stream)
                break
            except Exception as e:  # no server yet, stream being created by another worker, ...
                self.last_error = f"cannot set up the JetStream consumer at {self.cfg.url}: {e!r}; retrying"
                log.warning("%s", self.last_error)
                await asyncio.sleep(1.0)
        if sub is None:
            if nc is not None:
                await nc.close()
            return
        self._nc = nc
        self.generation += 1
        self.last_error = None
        self._nats_ready = True
        self._state()
        log.info(
            "worker %s bound to %s/%s at %s", self.worker_id, self.cfg.stream, self.cfg.durable, self.cfg.url
        )
        queue_max = self.config.ingest.queue_max
        while not self._stopping.is_set():
            if self._backlog() >= queue_max:
                await asyncio.sleep(0.05)
                continue
            try:
                msgs = await sub.fetch(self.cfg.fetch_batch, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except Exception as e:
                self.last_error = f"fetch from {self.cfg.stream}/{self.cfg.durable} failed: {e!r}"
                log.warning("%s", self.last_error)
                await asyncio.sleep(1.0)
                continue
            self._deliver(msgs)
        try:
            await nc.drain()  # sends the acks written so far; what is not acknowledged is redelivered
        except Exception:
            pass

    def _backlog(self) -> int:
        """Messages received and not yet taken by the writer (in the receiver process: not yet forwarded)."""
        return self.inbox.qsize() if hasattr(self.inbox, "qsize") else len(self.inbox.items)

    def state(self) -> tuple[bool, int, str | None]:
        """(connected, generation, last error): what the receiver process reports to the collector."""
        return self.connected.is_set(), self.generation, self.last_error

    def _deliver(self, msgs: list) -> None:
        now = time.time()
        for m in msgs:
            self._next_mid += 1
            self._msgs[self._next_mid] = m
            if m.metadata.num_delivered > 1:
                self.redelivered += 1
            self.inbox.put(
                Incoming(topic_of(m.subject), m.data, self._next_mid, 1, False, now, self.generation)
            )
        if self.stats is not None:
            self.stats.received += len(msgs)

    # ---------------------------------------------------------------- called by the writer and jobs

    def ack_many(self, acks: list[tuple[int, int, int]]) -> None:
        """Acknowledge committed messages (an ack after ack_wait is harmless: the copy is a duplicate)."""
        if acks and self._loop is not None:
            self._loop.call_soon_threadsafe(self._ack, [mid for mid, _qos, _gen in acks])

    def _ack(self, mids: list[int]) -> None:
        msgs = [m for m in (self._msgs.pop(mid, None) for mid in mids) if m is not None]
        if msgs:
            self._loop.create_task(self._send_acks(msgs))

    async def _send_acks(self, msgs: list) -> None:
        for m in msgs:
            try:
                await self._nc.publish(m.reply, b"+ACK")
            except Exception as e:  # disconnected: the server redelivers after ack_wait
                self.last_error = f"acknowledging failed: {e!r}"
                return

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        if self._publisher is None:
            self.dropped_to_devices += 1  # a centre never tells devices anything: their site collector does
            return
        self._publisher.publish(topic, payload, qos=qos, retain=retain)

    def describe(self) -> dict[str, Any]:
        return {
            "engine": "nats",
            "url": self.cfg.url,
            "stream": self.cfg.stream,
            "durable": self.cfg.durable,
            "worker": self.worker_id,
            "connected": self.connected.is_set(),
            "last_error": self.last_error,
            "redelivered": self.redelivered,
            "unacknowledged": len(self._msgs),
            "publishes_to_devices": self._publisher is not None,
        }

    # ---------------------------------------------------------------- watermarks to devices, over MQTT

    def _start_publisher(self) -> None:
        """A publish-only MQTT client on the NATS server's MQTT listener: retained watermarks for devices."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        m = self.config.mqtt
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{m.client_id}-{self.worker_id}"[:64],
            protocol=mqtt.MQTTv311,  # NATS speaks MQTT 3.1.1
            clean_session=True,
        )
        if m.username:
            c.username_pw_set(m.username, m.password())
        if m.tls is not None:
            c.tls_set(
                ca_certs=str(m.tls.ca_file),
                certfile=str(m.tls.cert_file) if m.tls.cert_file else None,
                keyfile=str(m.tls.key_file) if m.tls.key_file else None,
            )
            c.tls_insecure_set(m.tls.insecure)
        c.reconnect_delay_set(1, 30)

        def on_connect(client, userdata, flags, reason_code, properties):
            if not reason_code.is_failure:
                self.generation += 1  # the writer re-publishes every watermark after a (re)connect
                self._mqtt_ready.set()
                self._state()

        def on_disconnect(client, userdata, flags, reason_code, properties):
            self._mqtt_ready.clear()
            self._state()

        c.on_connect = on_connect
        c.on_disconnect = on_disconnect
        c.connect_async(m.host, m.port, keepalive=m.keepalive_s)
        c.loop_start()
        self._publisher = c
