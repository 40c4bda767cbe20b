"""MQTT delivery of the outbox: QoS 1, in sequence order, deleted only when delivery is confirmed.

One thread owns the paho client (paho's own network thread runs beside it). paho callbacks only put
events on a queue; this thread reads the outbox, publishes a window of records in ``seq`` order,
tracks PUBACKs by message id (``on_publish``), and deletes records when delivery is confirmed:

* ``confirm = "collector"`` (default, end to end): the collector publishes, retained on the ``ack``
  topic, the highest ``seq`` up to which it has committed every score; records at or below it are
  deleted. Records that stay above it ``resend_after_s`` after their PUBACK are re-sent (the oldest
  first, at most one window), which repairs a broker that lost its queue in a restart.
* ``confirm = "broker"``: a PUBACK deletes the record (hop by hop only).

After an outage the backlog drains at full speed in order; new scores simply join the end of it.
Every (re)connect restarts sending at the watermark (collector mode) or at the oldest record not yet
PUBACKed, so a broker that lost its queue in a crash costs re-sends, never order. Each connection gets a
fresh paho client: paho would otherwise re-publish, the moment it reconnects, the messages that were in
flight when the link dropped, ahead of the older records this thread re-sends, and the collector would
see them out of order. Reconnecting (with backoff) is therefore this thread's job, not paho's.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from amgs.contract import (
    ContractError,
    ack_topic,
    command_topic,
    crop_topic,
    decode,
    encode,
    score_topic,
    status_topic,
)
from amgs.device.config import DeviceConfig
from amgs.device.outbox import Outbox

log = logging.getLogger(__name__)

StatusFn = Callable[[str], dict[str, Any]]
"""Builds a status message for a state ("online", "offline", "degraded"; "online" may be upgraded)."""


class Delivery:
    def __init__(
        self,
        cfg: DeviceConfig,
        outbox_path: Path,
        status_fn: StatusFn,
        crop_reader: Callable[[str], bytes | None] = lambda _id: None,
        model_assign: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.outbox_path = outbox_path
        self.status_fn = status_fn
        self.crop_reader = crop_reader
        self.model_assign = model_assign
        site, dev = cfg.device.site, cfg.device.id
        self.topics = {
            "score": score_topic(site, dev),
            "status": status_topic(site, dev),
            "ack": ack_topic(site, dev),
            "command": command_topic(site, dev),
        }
        self.events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.collector_mode = cfg.delivery.confirm == "collector"
        self.window = cfg.delivery.window
        # State owned by the delivery thread.
        self.connected = False
        self.collector_live = False  # a live (not retained-on-subscribe) watermark arrived on this connection
        self._stale_seen: int | None = None  # the last stale retained watermark logged
        self.subscribed_at: float | None = None
        self.inflight: dict[int, int] = {}  # paho mid -> seq
        self.sent_at: dict[int, float] = {}  # seq -> monotonic time of the last publish (unconfirmed)
        self.pubacked: set[int] = set()
        self.send_after = 0  # highest seq handed to paho in this run
        self.watermark = 0
        self.stats: dict[str, Any] = {
            "connected": False,
            "queue_depth": 0,
            "unconfirmed": 0,
            "published": 0,
            "resent": 0,
            "confirmed": 0,
            "bad_messages": 0,
            "last_error": None,
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status_due = 0.0
        self._stats_due = 0.0
        self._more = True  # the outbox may hold more than one window
        self.client_gen = 0  # numbers the paho clients; events of a replaced one are ignored
        self._connect_at: float | None = time.monotonic()  # start the (next) client then
        self._reconnect_delay = cfg.mqtt.reconnect_min_s
        self.client = self._make_client()

    # ------------------------------------------------------------------ client and callbacks

    def _make_client(self) -> mqtt.Client:
        """A client for one connection (paho retries the first connect with backoff, never a reconnect)."""
        self.client_gen += 1
        gen = self.client_gen

        def put(*event: Any) -> None:
            self.events.put(("mqtt", gen, *event))

        m = self.cfg.mqtt
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"amgs-device-{self.cfg.device.id}",
            clean_session=True,
            reconnect_on_failure=False,
        )
        client.max_inflight_messages_set(self.window)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(m.reconnect_min_s, m.reconnect_max_s)
        if m.username is not None:
            password = Path(m.password_file).read_text().strip() if m.password_file else None
            client.username_pw_set(m.username, password)
        if m.tls_ca_file is not None:
            client.tls_set(ca_certs=str(m.tls_ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
        will = self.status_fn("offline")
        will["reason"] = "connection lost without a clean stop (last will): crash, power cut or network"
        client.will_set(self.topics["status"], encode(will), qos=1, retain=True)
        client.on_connect = lambda c, u, flags, rc, props: put("connect", rc)
        client.on_disconnect = lambda c, u, flags, rc, props: put("disconnect", rc)
        client.on_connect_fail = lambda c, u: put("connect_fail")
        client.on_subscribe = lambda c, u, mid, rcs, props: put("subscribed", mid)
        client.on_publish = lambda c, u, mid, rc, props: put("puback", mid)
        client.on_message = lambda c, u, msg: put("message", msg.topic, msg.payload, msg.retain)
        return client

    def _start_client(self) -> None:
        m = self.cfg.mqtt
        self._connect_at = None
        self.client.connect_async(m.host, m.port, keepalive=m.keepalive_s)
        self.client.loop_start()

    def _replace_client(self) -> None:
        """The connection is gone or could not be made: drop the client with what it still held in flight
        (its thread ends by itself: paho does not reconnect it) and connect a new one after the backoff."""
        self.client = self._make_client()
        self._connect_at = time.monotonic() + self._reconnect_delay
        self._reconnect_delay = min(self.cfg.mqtt.reconnect_max_s, self._reconnect_delay * 2)

    # ------------------------------------------------------------------ control (agent thread)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="amgs-delivery", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New records are in the outbox."""
        self.events.put(("wake",))

    def request_status(self) -> None:
        self.events.put(("status",))

    def stop(self, timeout: float | None = None) -> None:
        """Flush what can be sent within the flush timeout, publish status offline, disconnect."""
        self._stop.set()
        self.events.put(("wake",))
        if self._thread:
            self._thread.join(timeout if timeout is not None else self.cfg.delivery.flush_timeout_s + 10)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ the delivery thread

    def _run(self) -> None:
        self.outbox = Outbox(self.outbox_path, self.cfg.storage.outbox_max_records)
        flush_deadline: float | None = None
        try:
            while True:
                if self._connect_at is not None and time.monotonic() >= self._connect_at:
                    self._start_client()
                # Wake at once for events (PUBACKs, new records, acks); poll fast only while a backlog drains.
                wait = 0.005 if self._more and self._can_send() else 0.5
                if self._connect_at is not None:
                    wait = max(0.0, min(wait, self._connect_at - time.monotonic()))
                self._handle_events(wait)
                if self._stop.is_set():
                    if flush_deadline is None:
                        flush_deadline = time.monotonic() + self.cfg.delivery.flush_timeout_s
                    if self._flushed() or time.monotonic() >= flush_deadline:
                        break
                if self._can_send():
                    self._resend_overdue()
                    self._send_new()
                if self.connected and time.monotonic() >= self._status_due:
                    self._publish_status()
                if time.monotonic() >= self._stats_due:
                    self._update_stats()
        except Exception as e:  # noqa: BLE001 - report, the agent notices the dead thread
            log.exception("delivery thread failed")
            self.stats["last_error"] = f"delivery thread failed: {e}"
        finally:
            self._shutdown()

    def _handle_events(self, timeout: float) -> None:
        try:
            events = [self.events.get(timeout=timeout)]
        except queue.Empty:
            return
        while True:
            try:
                events.append(self.events.get_nowait())
            except queue.Empty:
                break
        confirmed: list[int] = []
        for event in events:
            if event[0] == "mqtt":
                if event[1] != self.client_gen:
                    continue  # from a client already replaced
                event = event[2:]
            kind = event[0]
            if kind == "connect":
                self._on_connect(event[1])
            elif kind == "disconnect":
                if self.connected:
                    log.warning(
                        "MQTT connection lost (%s); reconnecting in %.0f s", event[1], self._reconnect_delay
                    )
                self.connected = False
                self.subscribed_at = None
                self._replace_client()
            elif kind == "connect_fail":
                error = f"cannot reach the MQTT broker at {self.cfg.mqtt.host}:{self.cfg.mqtt.port}; retrying"
                if self.stats["last_error"] != error:
                    log.warning("%s", error)
                self.stats["last_error"] = error
                self._replace_client()
            elif kind == "subscribed":
                self.subscribed_at = time.monotonic()
            elif kind == "puback":
                seq = self.inflight.pop(event[1], None)
                if seq is not None:
                    self.pubacked.add(seq)
                    if not self.collector_mode:
                        confirmed.append(seq)
            elif kind == "message":
                self._on_message(event[1], event[2], bool(event[3]))
            elif kind == "status":
                self._status_due = 0.0
            elif kind == "wake":
                self._more = True
        if confirmed:
            self.outbox.delete(confirmed)
            self._forget(confirmed)
            self.stats["confirmed"] += len(confirmed)

    def _on_connect(self, rc: Any) -> None:
        if getattr(rc, "is_failure", False):
            self.stats["last_error"] = f"broker refused the connection: {rc}"
            log.error(
                "MQTT broker %s:%s refused the connection: %s", self.cfg.mqtt.host, self.cfg.mqtt.port, rc
            )
            return
        log.info("connected to MQTT broker %s:%s", self.cfg.mqtt.host, self.cfg.mqtt.port)
        self.connected = True
        self.collector_live = False
        self._more = True
        self._reconnect_delay = self.cfg.mqtt.reconnect_min_s
        self.stats["last_error"] = None
        # Start again from the oldest record not confirmed: in collector mode from the collector's watermark
        # (retained, it arrives right after the subscription), since a broker that crashed may have lost
        # records it had already PUBACKed; so the collector receives them in order instead of seeing newer
        # records first and a gap filled later. This client is new: nothing of the old one is re-sent.
        self.inflight.clear()
        self.sent_at.clear()
        self.pubacked.clear()
        self.send_after = 0
        self.client.subscribe([(self.topics["ack"], 1), (self.topics["command"], 1)])
        self._status_due = 0.0

    def _can_send(self) -> bool:
        if not self.connected:
            return False
        if not self.collector_mode:
            return True
        # Wait for a live watermark (the collector re-publishes them every few seconds): records sent
        # while the collector is not subscribed, e.g. right after a broker crash lost its session, would
        # be PUBACKed and dropped, then re-sent after newer ones. The retained watermark arrives with the
        # subscription; give it a moment too, so confirmed records are not sent again.
        if self.subscribed_at is None:
            return False
        waited = time.monotonic() - self.subscribed_at
        return waited > 0.3 and (self.collector_live or waited >= self.cfg.delivery.collector_wait_s)

    def _on_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        try:
            if topic == self.topics["ack"]:
                ack = decode(payload, "amgs.ack/1")
                if ack["device_id"] != self.cfg.device.id:
                    raise ContractError(f"ack for device {ack['device_id']!r} on my topic", "device_id")
                if not retained:  # a live publish: the collector is connected right now
                    self.collector_live = True
                self._on_watermark(int(ack["committed_seq"]), live=not retained)
            elif topic == self.topics["command"]:
                self._on_command(decode(payload, "amgs.command/1"))
        except ContractError as e:
            self.stats["bad_messages"] += 1
            log.warning("ignored a malformed message on %s: %s", topic, e)

    def _on_watermark(self, seq: int, live: bool = True) -> None:
        """Delete what the collector has stored; notice when the collector's database or ours was reset.

        A retained watermark may be stale: left on the broker by a collector whose database has since been
        reset or restored (a second demo run, a restore from backup). Only a live one, from a collector
        that is running now (it re-publishes every few seconds), may renumber this outbox or move the
        watermark back.
        """
        last = self.outbox.last_seq()
        if seq > last and not live:
            if self._stale_seen != seq:
                self._stale_seen = seq
                log.info(
                    "retained watermark %d is above this device's last seq %d: waiting for the running "
                    "collector's own before acting on it (it may be left by a reset collector)", seq, last,
                )  # fmt: skip
            return
        if seq > last:
            # The collector knows higher numbers than this outbox ever gave out: the state directory was
            # lost or replaced. Continue after the collector's number instead of re-using seqs.
            n = self.outbox.renumber_after(seq)
            log.error(
                "the collector has committed seq %d but this device only reached %d (state directory reset?); "
                "numbering continues after %d (%d unsent record(s) renumbered)",
                seq, last, seq, n,
            )  # fmt: skip
            self.stats["last_error"] = f"sequence reset detected: collector at {seq}, device was at {last}"
            self.inflight.clear()
            self.sent_at.clear()
            self.pubacked.clear()
            self.send_after = seq
            self.watermark = seq
            return
        if seq < self.watermark:
            if not live:
                return  # a stale retained copy; the live heartbeat follows
            # The collector's database went back (restored from a backup, or reset): what it confirmed
            # above seq and this device already deleted is gone from both; everything still held here is
            # sent again, and the collector counts the rest as a gap (lost after its gap timeout).
            log.warning(
                "the collector's watermark went back from %d to %d (its database was restored or reset): "
                "re-sending every record this device still holds above %d", self.watermark, seq, seq,
            )  # fmt: skip
            self.stats["last_error"] = f"collector watermark went back from {self.watermark} to {seq}"
            self.watermark = seq
            self.send_after = min(self.send_after, seq)
            self._forget(list(self.sent_at))
            self._more = True
            return
        self.watermark = max(self.watermark, seq)
        if self.collector_mode:
            self.stats["confirmed"] += self.outbox.delete_upto(seq)
            self._forget([s for s in self.sent_at if s <= seq])

    def _on_command(self, cmd: dict[str, Any]) -> None:
        name = cmd["command"]
        if name == "publish_status":
            self._status_due = 0.0
        elif name == "resend_from":
            start = int(cmd.get("seq", 0))
            log.info("collector asked to re-send from seq %d", start)
            self.send_after = min(self.send_after, max(0, start - 1))
            self._more = True
        elif name == "model_assign":
            if self.model_assign is not None:
                self.model_assign(cmd)
            else:
                log.warning(
                    "the collector assigned a model, but model_update.collector_url is not set: ignored"
                )
        elif name == "send_crops":
            for msg_id in cmd.get("msg_ids", []):
                data = self.crop_reader(msg_id)
                if data is not None and self.connected:
                    self.client.publish(
                        crop_topic(self.cfg.device.site, self.cfg.device.id, msg_id), data, qos=0
                    )

    def _forget(self, seqs: list[int]) -> None:
        for s in seqs:
            self.sent_at.pop(s, None)
            self.pubacked.discard(s)

    def _publish(self, seq: int, payload: bytes) -> bool:
        info = self.client.publish(self.topics["score"], payload, qos=1)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("publish of seq %d failed: %s", seq, mqtt.error_string(info.rc))
            return False
        self.inflight[info.mid] = seq
        self.sent_at[seq] = time.monotonic()
        self.pubacked.discard(seq)
        return True

    def _send_new(self) -> None:
        room = self.window - len(self.inflight)
        if room <= 0:
            return  # PUBACK events will wake the loop
        batch = self.outbox.pending(max(self.send_after, self.watermark), room)
        self._more = len(batch) == room
        for rec in batch:
            if not self._publish(rec.seq, rec.payload):
                return
            self.send_after = rec.seq
            self.stats["published"] += 1

    def _resend_overdue(self) -> None:
        """Collector mode: re-send the oldest records above the watermark whose PUBACK is long past."""
        if not self.collector_mode or not self.pubacked:
            return
        room = self.window - len(self.inflight)
        limit = self.watermark + self.window
        cutoff = time.monotonic() - self.cfg.delivery.resend_after_s
        due = sorted(s for s in self.pubacked if s <= limit and self.sent_at.get(s, 0) < cutoff)[:room]
        for seq in due:
            rec = self.outbox.get(seq)
            if rec is None:  # confirmed or dropped meanwhile
                self._forget([seq])
                continue
            if self._publish(seq, rec.payload):
                self.stats["resent"] += 1

    def _flushed(self) -> bool:
        """Everything in the outbox has reached the broker at least (or the broker is unreachable)."""
        if not self.connected:
            return False
        return not self.inflight and not self.outbox.pending(max(self.send_after, self.watermark), 1)

    def _update_stats(self) -> None:
        """Figures for the status message (a count over the outbox: at most once a second)."""
        self._stats_due = time.monotonic() + 1.0
        self.stats["connected"] = self.connected
        self.stats["queue_depth"] = self.outbox.count()
        self.stats["unconfirmed"] = len(self.sent_at)

    def _publish_status(self, state: str = "online") -> None:
        self._status_due = time.monotonic() + self.cfg.status.interval_s
        self._update_stats()
        try:
            payload = encode(self.status_fn(state))
        except ContractError as e:
            log.error("status message does not follow the contract: %s", e)
            return
        self.client.publish(self.topics["status"], payload, qos=1, retain=True)

    def _shutdown(self) -> None:
        try:
            if self.connected:
                self._update_stats()
                info = self.client.publish(
                    self.topics["status"], encode(self.status_fn("offline")), qos=1, retain=True
                )
                info.wait_for_publish(timeout=3)
            self.client.disconnect()
        except Exception as e:  # noqa: BLE001 - shutting down anyway
            log.warning("clean MQTT shutdown failed: %s", e)
        finally:
            self.client.loop_stop()
            self.outbox.close()
