"""A collector whose database was reset or restored: devices tell a stale retained watermark from a live one.

Outside test: a second demo run kept the broker's retained watermarks (1428) but not the collector's
database; the devices took themselves for reset, renumbered after 1428, and were never confirmed again
("collector watermark went back from 1428 to 0" every 5 s).
"""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from device_helpers import AckingCollector, make_replay, synth_faces, write_config
from paho.mqtt.enums import CallbackAPIVersion

from amgs.contract import Ack, ack_topic, utc_now
from amgs.device.agent import Agent
from amgs.device.config import load_config
from amgs.device.outbox import Outbox


def _retain_ack(port: int, committed: int) -> None:
    """What a collector that has since been reset left on the broker."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="old-collector")
    c.connect("127.0.0.1", port)
    c.loop_start()
    ack = Ack.build(device_id="dev1", committed_seq=committed, at=utc_now())
    c.publish(ack_topic("lab", "dev1"), ack.encode(), qos=1, retain=True).wait_for_publish(10)
    c.loop_stop()
    c.disconnect()


def test_a_stale_retained_watermark_neither_renumbers_nor_blocks_a_device(
    tmp_path, broker, synth_set, scorer
):
    n = 6
    frames = tmp_path / "frames"
    make_replay(frames, synth_faces(synth_set, n))
    cfg = write_config(tmp_path / "d.toml", port=broker.port, state=tmp_path / "state", frames=frames)
    _retain_ack(broker.port, 1428)
    agent = Agent(load_config(cfg), scorer=scorer)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    time.sleep(1.5)  # the device has met the stale watermark before the new collector says anything
    collector = AckingCollector(broker.port)  # the reset collector: empty database, live watermarks from 0
    try:
        thread.join(120)
        assert not thread.is_alive(), "the device never had its scores confirmed"
    finally:
        agent.stop_requested.set()
        collector.close()
    assert collector.seqs() == list(range(1, n + 1))  # numbered from 1, not after the stale 1428
    assert collector.committed == n
    assert Outbox(tmp_path / "state" / "outbox.sqlite3").count() == 0
    assert "sequence reset" not in str(agent.delivery.stats.get("last_error"))
