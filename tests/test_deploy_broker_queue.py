"""The shipped broker config keeps a day of one device's scores for an offline collector, across a restart.

Mosquitto's default ``max_queued_messages`` (1000) would silently drop 7,640 of a day's 8,640 scores
(one per 10 s); the shipped config raises it and turns persistence on.
"""

from __future__ import annotations

import queue
import shutil
import threading

import paho.mqtt.client as mqtt
import pytest
from deploy_site import Client, Site, new_site_root, wait_until
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from amgs import contract
from amgs.broker import mosquitto_path

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        mosquitto_path() is None or shutil.which("openssl") is None, reason="needs mosquitto and openssl"
    ),
]
DAY = 8640
SITE = "lab1"


def collector_session(site: Site, received: queue.Queue) -> mqtt.Client:
    """The collector's persistent MQTT v5 session (like amgs.server.ingest.mqtt): clean_start off, expiry 1 day."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="amgs-collector", protocol=mqtt.MQTTv5)
    c.username_pw_set("collector", site.collector_password())
    connected = threading.Event()
    c.on_connect = lambda cl, u, f, rc, p: (
        cl.subscribe(contract.collector_subscriptions("+")[0], qos=1),
        connected.set(),
    )
    c.on_message = lambda cl, u, m: received.put(m.payload)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 86400
    c.connect("127.0.0.1", site.plain_port, clean_start=False, properties=props)
    c.loop_start()
    assert connected.wait(10)
    return c


def test_a_day_of_scores_waits_for_an_offline_collector_across_a_broker_restart():
    root = new_site_root("amgs-queue-")
    site = Site(root, site=SITE)
    try:
        assert site.provision("collector").exit_code == 0
        assert site.provision("device", "box-01", "--cage", "C1").exit_code == 0
        site.start()
        received: queue.Queue = queue.Queue()
        col = collector_session(site, received)
        col.disconnect()  # the collector goes away; its session stays
        col.loop_stop()

        dev = Client(site.tls_port, "box-01", site.password("box-01"), ca=site.ca)
        assert not dev.connect().is_failure
        topic = contract.score_topic(SITE, "box-01")
        acked = 0
        for seq in range(1, DAY + 1):
            dev.c.publish(topic, b'{"seq": %d}' % seq, qos=1)
        while acked < DAY:
            _, rc = dev.puback_q.get(timeout=60)
            assert not rc.is_failure
            acked += 1
        dev.close()

        site.stop()  # graceful: Mosquitto saves its queue
        site.start()
        col = collector_session(site, received)
        wait_until(lambda: received.qsize() >= DAY, 120, f"{DAY} queued scores delivered")
        col.disconnect()
        col.loop_stop()
        seqs = []
        while not received.empty():
            seqs.append(int(received.get().split(b":")[1].strip(b" }")))
        assert sorted(set(seqs)) == list(range(1, DAY + 1))
    finally:
        site.stop(kill=True)
        shutil.rmtree(root, ignore_errors=True)
