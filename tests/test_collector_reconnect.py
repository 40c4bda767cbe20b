"""After a broker restart the collector is back first: devices wait for its watermark before sending."""

from __future__ import annotations

import time

import pytest
from server_support import server_config, wait_for

from amgs.server.service import Collector


@pytest.mark.slow
def test_collector_reconnects_within_seconds_of_a_long_broker_outage(tmp_path, broker):
    collector = Collector(server_config(tmp_path, broker)).start()
    try:
        wait_for(collector.mqtt.connected.is_set, timeout=30, what="the collector subscribed")
        broker.stop()
        wait_for(
            lambda: not collector.mqtt.connected.is_set(), timeout=30, what="the collector saw the outage"
        )
        time.sleep(20)  # long enough for a 1 s doubling backoff to reach 16 s between attempts
        broker.start()
        back = time.monotonic()
        wait_for(collector.mqtt.connected.is_set, timeout=60, what="the collector back on the broker")
        took = time.monotonic() - back
        # mqtt.reconnect_max_s = 2 by default; allow for process start-up on a loaded machine
        assert took < 6, f"the collector took {took:.1f} s to reconnect after the broker came back"
    finally:
        collector.stop()
