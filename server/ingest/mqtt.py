"""The collector's MQTT connection: persistent session, QoS 1, manual acknowledgement.

paho-mqtt 2.x, MQTT v5, a fixed client id and ``clean_start=False`` with a session expiry, so the
broker keeps our subscriptions and queues QoS 1 messages while the collector is down. With
``manual_ack=True`` a message is acknowledged (PUBACK) only after the writer committed it: if the
process dies first, the broker redelivers it and the idempotent insert makes that harmless.

Callbacks only enqueue; subscriptions are made in ``on_connect``. The collector runs this class in its
receiver process (:mod:`amgs.server.ingest.receiver`), so paho's packet handling has a core of its own.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from amgs.contract import collector_subscriptions
from amgs.server.config import ConfigError

from .incoming import Incoming

log = logging.getLogger(__name__)


class MqttIngest:
    """Receives into ``inbox``; ``ack_many`` and ``publish`` may be called from any thread.

    ``generation`` numbers the connections (from ``first_generation`` + 1): a PUBACK is only valid on the
    connection its message came on, since packet ids are per connection.
    """

    def __init__(self, config, inbox, first_generation: int = 0) -> None:
        self.cfg = config.mqtt
        self.inbox = inbox
        self.generation = first_generation
        self.connected = threading.Event()
        self.last_error: str | None = None
        self.v5 = self.cfg.protocol == "5"
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.cfg.session_id,
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
            clean_session=None if self.v5 else False,  # 3.1.1: a persistent session the old way
            manual_ack=True,
        )
        if self.cfg.username:
            c.username_pw_set(self.cfg.username, self.cfg.password())
        if self.cfg.tls is not None:
            tls = self.cfg.tls
            try:
                c.tls_set(
                    ca_certs=str(tls.ca_file),
                    certfile=str(tls.cert_file) if tls.cert_file else None,
                    keyfile=str(tls.key_file) if tls.key_file else None,
                    cert_reqs=ssl.CERT_REQUIRED,
                )
            except (OSError, ssl.SSLError) as e:
                files = ", ".join(str(f) for f in (tls.ca_file, tls.cert_file, tls.key_file) if f)
                raise ConfigError(f"mqtt.tls: cannot load {files}: {e}") from None
            c.tls_insecure_set(tls.insecure)
        c.reconnect_delay_set(min(0.5, self.cfg.reconnect_max_s), self.cfg.reconnect_max_s)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_connect_fail = self._on_connect_fail
        self._subscription: int | None = None
        self.client = c

    # ---------------------------------------------------------------- callbacks (enqueue only)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            log.error("%s", self.last_error)
            return
        self.generation += 1
        self.last_error = None
        log.info(
            "connected to %s:%d (session present: %s)", self.cfg.host, self.cfg.port, flags.session_present
        )
        self._subscription = client.subscribe([(t, 1) for t in collector_subscriptions(self.cfg.site)])[1]

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        """``connected`` means subscribed: only then do scores reach us (a new session queues nothing before)."""
        if mid != self._subscription:
            return
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            self.last_error = (
                f"broker refused the subscription ({', '.join(refused)}): check the collector's ACL"
            )
            log.error("%s", self.last_error)
            return
        self.connected.set()

    def _on_connect_fail(self, client, userdata) -> None:
        error = f"cannot reach the broker at {self.cfg.host}:{self.cfg.port}; retrying"
        if self.last_error != error:
            log.warning("%s", error)
        self.last_error = error

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if reason_code != 0:
            self.last_error = f"disconnected: {reason_code}"
            log.warning("MQTT %s; reconnecting", self.last_error)

    def _on_message(self, client, userdata, message) -> None:
        self.inbox.put(
            Incoming(
                message.topic,
                message.payload,
                message.mid,
                message.qos,
                bool(message.retain),
                time.time(),
                self.generation,
            )
        )

    # ---------------------------------------------------------------- called by the receiver's command loop

    def ack_many(self, acks: list[tuple[int, int, int]]) -> None:
        """PUBACK committed messages ``(mid, qos, generation)``, except those that came on an earlier
        connection (the broker resends those)."""
        generation = self.generation
        if not self.connected.is_set():
            return
        for mid, qos, gen in acks:
            if qos and gen == generation:
                self.client.ack(mid, qos)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.cfg.session_expiry_s
            props.ReceiveMaximum = self.cfg.receive_maximum
            self.client.connect_async(
                self.cfg.host,
                self.cfg.port,
                keepalive=self.cfg.keepalive_s,
                clean_start=False,
                properties=props,
            )
        else:
            self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def state(self) -> tuple[bool, int, str | None]:
        """(connected, generation, last error): what the receiver reports to the collector."""
        return self.connected.is_set(), self.generation, self.last_error


def check_settings(config) -> None:
    """Build the client once, without connecting: a password or certificate file that cannot be loaded
    raises ConfigError naming it (at start and in ``amgs server check-config``, not in the receiver)."""
    MqttIngest(config, None)
