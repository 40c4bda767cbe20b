"""End to end with the real collector (amgs.server): device outbox -> Mosquitto -> collector SQLite -> watermark.

The device keeps every score until the collector's retained ack watermark passes it; a broker
restart in the middle must not lose or duplicate anything in the collector's database.
"""

from __future__ import annotations

import threading
import time

import pytest
from device_helpers import make_replay, synth_faces, write_config

from amgs.device.agent import Agent
from amgs.device.config import load_config
from amgs.device.outbox import Outbox

server = pytest.importorskip("amgs.server.service")


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_agent_to_real_collector_through_a_broker_restart(tmp_path, broker, scorer, synth_set):
    from amgs.server.config import parse_config

    config = parse_config(
        {
            "storage": {"state_dir": str(tmp_path / "collector")},
            "http": {"port": 0},
            "ingest": {"batch_wait_ms": 5},
            "mqtt": {"port": broker.port, "client_id": "collector-e2e"},
        }
    )
    collector = server.Collector(config, with_http=False).start()
    _wait(collector.mqtt.connected.is_set, 30, "collector connected")

    def stored(sql: str = "SELECT count(*) FROM scores"):
        row = collector.db.local().execute(sql).fetchone()
        return row[0] if row else None

    n = 10
    frames = tmp_path / "frames"
    make_replay(frames, synth_faces(synth_set, n), step_s=1.0)
    cfg = write_config(
        tmp_path / "d.toml",
        port=broker.port,
        state=tmp_path / "state",
        frames=frames,
        agent={"exit_when_done": True, "done_timeout_s": 60},
    )
    cfg.write_text(
        cfg.read_text().replace('kind = "folder"', 'kind = "folder"\nrealtime = true\nspeed = 4.0')
    )
    agent = Agent(load_config(cfg), scorer=scorer)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        _wait(lambda: (stored() or 0) >= 2, 60, "first scores in the collector")
        broker.stop()
        time.sleep(1.5)
        broker.start()
        thread.join(120)
        assert not thread.is_alive(), "the agent did not see every score confirmed"
        _wait(lambda: stored() == n, 30, "all scores stored")
        assert stored("SELECT count(DISTINCT msg_id) FROM scores") == n
        assert stored("SELECT committed_seq FROM devices WHERE device_id = 'dev1'") == n
    finally:
        agent.stop_requested.set()
        collector.stop()
    assert Outbox(tmp_path / "state" / "outbox.sqlite3").count() == 0
