"""The MQTT channel: each cage's current alert state, retained, on the contract's alert topic (real Mosquitto).

SQLite here; tests/test_pg_alerts.py collects these tests again on PostgreSQL (it replaces ``server_config``).
"""

from __future__ import annotations

import json
import queue
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt

from amgs.contract import alert_topic, validate
from amgs.server.alerts.channels import build_channels
from amgs.server.alerts.config import AlertsConfig, NotifyConfig
from amgs.server.alerts.engine import AlertEngine
from amgs.server.alerts.outbox import Deliverer
from amgs.server.alerts.rules import Condition
from amgs.server.storage.db import open_database
from tests.server_support import server_config


def retained(port: int, topic: str, timeout: float = 5.0) -> dict:
    """Connect fresh and read the retained message on ``topic``: what a late subscriber would see."""
    got: queue.Queue = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.on_connect = lambda cl, u, f, rc, p: cl.subscribe(topic, qos=1)
    c.on_message = lambda cl, u, m: got.put(m)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        m = got.get(timeout=timeout)
        assert m.retain
        return json.loads(m.payload)
    finally:
        c.loop_stop()
        c.disconnect()


def test_retained_cage_state_and_broker_outage(tmp_path, broker):
    now = [datetime(2026, 5, 1, 8, 0, tzinfo=UTC)]
    clock = lambda: now[0]  # noqa: E731
    db = open_database(
        server_config(tmp_path)
    ).local()  # the alert tables come from the collector's migrations
    notify = NotifyConfig(retry_initial_s=1, mqtt={"publish_timeout_s": 2})
    engine = AlertEngine(db, AlertsConfig(resolve_after_min=0), notify, clock, clock)
    channels = build_channels(
        notify, {"host": "127.0.0.1", "port": broker.port, "client_id": "amgs-alerts-test"}
    )
    deliverer = Deliverer(db, notify, channels, clock)
    try:
        pain = Condition("sustained_pain", "lab1", "C07", "alert", "pain in C07", 0.7, 0.5, "M7", "dev1")
        offline = Condition(
            "device_offline", "lab1", "C07", "warning", "dev1 offline", 20.0, 15.0, None, "dev1"
        )
        engine.apply([pain, offline])
        assert deliverer.deliver_due() == (2, 0)
        state = validate(retained(broker.port, alert_topic("lab1", "C07")), "amgs.alert/1")
        assert (state["rule"], state["state"], state["severity"]) == ("sustained_pain", "open", "alert")

        # Broker down: the resolution is kept and retried; after the restart the cage shows the remaining alert.
        broker.stop()
        now[0] += timedelta(minutes=1)
        engine.apply([offline])
        assert deliverer.deliver_due() == (0, 1)
        assert deliverer.pending()[0]["attempts"] == 1 and deliverer.pending()[0]["last_error"]
        broker.start()
        now[0] += timedelta(seconds=2)
        delivered = 0
        for _ in range(10):
            delivered += deliverer.deliver_due()[0]
            if not deliverer.pending():
                break
            now[0] += timedelta(seconds=30)
        assert deliverer.pending() == []
        state = retained(broker.port, alert_topic("lab1", "C07"))
        assert (state["rule"], state["state"]) == ("device_offline", "open")

        now[0] += timedelta(minutes=1)
        engine.apply([])
        deliverer.deliver_due()
        assert retained(broker.port, alert_topic("lab1", "C07"))["state"] == "resolved"
    finally:
        channels["mqtt"].close()
