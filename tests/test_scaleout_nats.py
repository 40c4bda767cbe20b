"""Many collector workers on NATS JetStream (docs/scale-out.md), against a real nats-server on free ports.

Devices publish over MQTT to NATS's MQTT listener; collector workers (real ``amgs server run`` processes)
share one durable pull consumer and one database. Counted by sequence: nothing lost, nothing stored twice,
every device's watermark (in the database and retained for the device) at its last seq.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from deploy_site import wait_until
from engine_helpers import (
    committed_seqs,
    publish_scores,
    start_worker,
    stored_by_seq,
    stored_count,
    worker_toml,
)
from pg_support import pg_databases  # noqa: F401  (fixture)
from server_support import Watcher

from amgs.engines import LocalNats, nats_server_path

pytestmark = pytest.mark.skipif(nats_server_path() is None, reason="nats-server is not installed")

DEVICES = [f"box-{i}" for i in range(4)]


@pytest.fixture
def nats_server(tmp_path):
    server = LocalNats(tmp_path / "nats").start()
    yield server
    server.stop()


def consumer_info(url: str, stream: str = "AMGS", durable: str = "amgs-collector"):
    import nats

    async def run():
        nc = await nats.connect(url)
        try:
            return await nc.jetstream().consumer_info(stream, durable)
        finally:
            await nc.close()

    return asyncio.run(run())


def check_exactly_once(db, n: int) -> None:
    stored = stored_by_seq(db)
    for device in DEVICES:
        assert stored.get(device) == list(range(1, n + 1)), (
            f"{device}: lost {sorted(set(range(1, n + 1)) - set(stored.get(device, [])))[:10]}, "
            f"stored {len(stored.get(device, []))} for {n} seqs"
        )
    assert committed_seqs(db) == {d: n for d in DEVICES}


@pytest.mark.parametrize("storage", ["sqlite", "postgres"])
def test_two_workers_share_the_stream_and_a_killed_worker_loses_nothing(
    tmp_path, nats_server, storage, request
):
    state = tmp_path / "state"
    db = state / "collector.db"
    url = None
    if storage == "postgres":
        url = db = request.getfixturevalue("pg_databases").create()
    conf = {
        name: worker_toml(
            tmp_path / f"{name}.toml",
            state_dir=state,
            nats_url=nats_server.url,
            mqtt_port=nats_server.mqtt_port,
            ack_wait_s=3,
            storage_url=url,
        )
        for name in ("a", "b")
    }
    watcher = Watcher(nats_server.mqtt_port, ["amgs/v1/+/+/ack"])
    a = start_worker(conf["a"], tmp_path / "a.log")
    b = None
    try:
        wait_until(lambda: "bound to AMGS/amgs-collector" in a.tail(), 60, "worker a bound", proc=a)
        n = 600
        publish_scores(nats_server.mqtt_port, DEVICES, range(1, n + 1), client_id="devices")
        # kill -9 worker a in the middle of the backlog: what it took and did not commit stays unacknowledged
        wait_until(lambda: stored_count(db) >= 100, 120, "100 scores stored", proc=a)
        a.stop(kill=True)
        killed_at = stored_count(db)
        held = consumer_info(nats_server.url).num_ack_pending
        assert killed_at < n * len(DEVICES)
        # two workers now share the rest, and get what a held once ack_wait has passed
        b = start_worker(conf["b"], tmp_path / "b.log")
        a = start_worker(conf["a"], tmp_path / "a.log")
        wait_until(lambda: stored_count(db) >= n * len(DEVICES), 180, "every score stored", proc=b)
        time.sleep(1.0)
        check_exactly_once(db, n)
        info = consumer_info(nats_server.url)
        print(
            f"\nSCALEOUT kill -9: at {killed_at} stored, {held} taken by the dead worker and unacknowledged"
        )
        # the dead worker held messages; all are stored once and none is unacknowledged: they were redelivered
        assert held > 0, "the kill did not catch the worker holding messages"
        assert info.num_ack_pending == 0
        assert "bound to AMGS/amgs-collector" in b.tail() and stored_count(db) == n * len(DEVICES)
        # the watermark each device sees (retained, via NATS's MQTT listener) is its last seq
        wait_until(
            lambda: all(
                (watcher.json(f"amgs/v1/lab/{d}/ack") or {}).get("committed_seq") == n for d in DEVICES
            ),
            30,
            "watermarks at the last seq",
        )
        late = Watcher(nats_server.mqtt_port, ["amgs/v1/+/+/ack"])  # a device connecting now: retained copy
        try:
            wait_until(lambda: len(late.last) == len(DEVICES), 20, "retained watermarks")
            assert {json.loads(p)["committed_seq"] for p in late.last.values()} == {n}
        finally:
            late.close()
    finally:
        watcher.close()
        a.stop(kill=True)
        if b is not None:
            b.stop()


def test_a_worker_restarted_after_kill_resumes_the_durable_consumer(tmp_path, nats_server):
    """One worker, killed during a backlog and started again: it finishes the stream; nothing twice."""
    state = tmp_path / "state"
    db = state / "collector.db"
    conf = worker_toml(
        tmp_path / "w.toml", state_dir=state, nats_url=nats_server.url, mqtt_port=nats_server.mqtt_port
    )
    w = start_worker(conf, tmp_path / "w.log")
    try:
        wait_until(lambda: "bound to AMGS/amgs-collector" in w.tail(), 60, "worker bound", proc=w)
        w.stop(kill=True)
        n = 400
        publish_scores(nats_server.mqtt_port, DEVICES, range(1, n + 1), client_id="devices")  # a backlog
        w = start_worker(conf, tmp_path / "w.log")
        wait_until(lambda: stored_count(db) >= 200, 120, "part of the backlog stored", proc=w)
        w.stop(kill=True)
        w = start_worker(conf, tmp_path / "w.log")
        wait_until(lambda: stored_count(db) >= n * len(DEVICES), 180, "every score stored", proc=w)
        check_exactly_once(db, n)
    finally:
        w.stop()
