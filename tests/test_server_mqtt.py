"""The collector against a real Mosquitto: end-to-end storage and watermarks, persistent session,
redelivery, gaps, fuzzed traffic, broker restarts, and kill -9 of the collector during ingest."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from server_support import Watcher, get_json, get_text, server_config, wait_for

from amgs.contract import ack_topic, decode, score_topic, status_topic
from amgs.demo import loadgen
from amgs.server.jobs import PeriodicJob
from amgs.server.service import Collector


def publish(broker, messages):
    loadgen.publish_all("127.0.0.1", broker.port, [loadgen.score_payload(m) for m in messages])


def count(collector, sql="SELECT count(*) FROM scores"):
    row = collector.db.local().execute(sql).fetchone()
    return row[0] if row else None


@pytest.fixture
def collector(tmp_path, broker):
    jobs_ran = []
    c = Collector(
        server_config(tmp_path, broker), jobs=[PeriodicJob("probe", 0.2, lambda ctx: jobs_ran.append(ctx))]
    )
    c.jobs_ran = jobs_ran
    c.start()
    wait_for(c.mqtt.connected.is_set, what="collector connected")
    yield c
    c.stop()


def test_scores_stored_acknowledged_and_watermark_published(collector, broker):
    watcher = Watcher(broker.port, [ack_topic("lab", "d1")])
    try:
        publish(broker, [loadgen.score_message("d1", s) for s in range(1, 201)])
        wait_for(lambda: count(collector) == 200, what="200 scores stored")
        ack = wait_for(
            lambda: (a := watcher.json(ack_topic("lab", "d1"))) and a["committed_seq"] == 200 and a,
            what="watermark 200",
        )
        decode(json.dumps(ack).encode(), "amgs.ack/1")
    finally:
        watcher.close()
    base = f"http://127.0.0.1:{collector.http_port}"
    health = get_json(base + "/healthz")
    assert health["status"] == "ok" and health["mqtt"]["connected"]
    metrics = get_text(base + "/metrics")
    assert "amgs_ingest_stored_total 200" in metrics
    assert 'amgs_committed_seq{device="d1"} 200' in metrics
    wait_for(lambda: collector.jobs_ran, what="periodic job ran")
    assert collector.jobs_ran[0].db is collector.db


def test_persistent_session_redelivery_and_no_duplicates(tmp_path, broker):
    config = server_config(tmp_path, broker)
    first = Collector(config, with_http=False).start()
    wait_for(first.mqtt.connected.is_set, what="connected")
    first.stop()
    msgs = [loadgen.score_message("d1", s) for s in range(1, 301)]
    publish(broker, msgs)  # the collector is down: the broker queues them in its session
    second = Collector(config, with_http=False).start()
    try:
        wait_for(lambda: count(second) == 300, what="queued messages delivered after restart")
        publish(broker, msgs[:100])  # a device re-sending what it has not seen confirmed
        wait_for(lambda: second.stats.duplicates == 100, what="duplicates seen")
        assert count(second) == 300
        assert count(second, "SELECT committed_seq FROM devices") == 300
    finally:
        second.stop()


def test_sequence_gap_is_counted_and_visible_in_the_api(collector, broker):
    publish(broker, [loadgen.score_message("d1", s) for s in (1, 2, 3, 4, 5, 8, 9, 10)])
    wait_for(lambda: count(collector) == 8, what="8 scores")
    base = f"http://127.0.0.1:{collector.http_port}"
    (device,) = get_json(base + "/api/devices")
    assert (device["committed_seq"], device["max_seq"], device["missing_open"], device["gaps_total"]) == (
        5,
        10,
        2,
        1,
    )
    (gap,) = get_json(base + "/api/gaps?state=open")
    assert (gap["first_seq"], gap["last_seq"], gap["size"]) == (6, 7, 2)
    assert 'amgs_seq_missing{device="d1"} 2' in get_text(base + "/metrics")


def test_device_status_and_last_will(collector, broker):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from amgs.contract import encode

    dev = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="d7")
    dev.will_set(
        status_topic("lab", "d7"),
        encode(loadgen.status_message("d7", "offline", reason="last will")),
        1,
        True,
    )
    dev.connect("127.0.0.1", broker.port)
    dev.loop_start()
    dev.publish(
        status_topic("lab", "d7"), encode(loadgen.status_message("d7", queue_depth=12)), 1, True
    ).wait_for_publish()
    state = lambda: count(collector, "SELECT state FROM devices WHERE device_id = 'd7'")  # noqa: E731
    wait_for(lambda: state() == "online", what="online")
    assert count(collector, "SELECT queue_depth FROM devices WHERE device_id = 'd7'") == 12
    dev.loop_stop()
    dev.socket().close()  # vanish without DISCONNECT: the broker publishes the will
    wait_for(lambda: state() == "offline", timeout=60, what="last will -> offline")


def test_fuzzed_traffic_is_quarantined_and_the_collector_keeps_working(collector, broker):
    rng = random.Random(7)
    valid = loadgen.score_message("d1", 1)
    items = []
    for i in range(1000):
        m = dict(valid, msg_id=f"{i:032x}")
        choice = i % 6
        if choice == 0:
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
        elif choice == 1:
            m[rng.choice(sorted(m))] = rng.choice([None, -1, "x" * 300, [1], {"a": 1}, 1e300, True])
            m["p_pain"] = 2  # keep it invalid even when the line above happened to be harmless
            payload = json.dumps(m).encode()
        elif choice == 2:
            del m[rng.choice(["seq", "msg_id", "clock", "model", "amgs", "label"])]
            payload = json.dumps(m).encode()
        elif choice == 3:
            payload = json.dumps(dict(m, schema="amgs.score/9")).encode()
        elif choice == 4:
            payload = json.dumps(dict(m, device_id="intruder")).encode()  # not the topic's device
        else:
            payload = b'{"schema": "amgs.score/1", "cage_id": "\xff\xfe"}'
        items.append((score_topic("lab", "d1"), payload))
    items.append((status_topic("lab", "d1"), b"{}"))
    items.append(("amgs/v1/lab/d1/crop/" + "a" * 32, b"GIF89a not a jpeg"))
    loadgen.publish_all("127.0.0.1", broker.port, items)
    total = lambda: count(collector, "SELECT coalesce(sum(count), 0) FROM quarantine")  # noqa: E731
    wait_for(lambda: total() == len(items), what="all fuzzed messages quarantined")
    assert count(collector) == 0
    publish(broker, [loadgen.score_message("d1", 1)])
    wait_for(lambda: count(collector) == 1, what="a valid score after the fuzz")
    health = get_json(f"http://127.0.0.1:{collector.http_port}/healthz")
    assert health["status"] == "ok"
    rows = get_json(f"http://127.0.0.1:{collector.http_port}/api/quarantine?limit=2000")
    assert all(r["reason"] for r in rows) and any("arrived on the topic" in r["reason"] for r in rows)
    metrics = get_text(f"http://127.0.0.1:{collector.http_port}/metrics")
    for field in ("device_id", "payload", "schema"):
        assert f'amgs_ingest_quarantined_by_field_total{{field="{field}"}}' in metrics


def test_broker_restart_collector_reconnects(collector, broker):
    publish(broker, [loadgen.score_message("d1", s) for s in range(1, 11)])
    wait_for(lambda: count(collector) == 10, what="first scores")
    broker.stop(kill=True)
    wait_for(lambda: not collector.mqtt.connected.is_set(), what="disconnect noticed")
    health = get_json(f"http://127.0.0.1:{collector.http_port}/healthz")
    assert health["status"] == "degraded" and "not connected" in health["problems"][0]
    broker.start()
    wait_for(collector.mqtt.connected.is_set, timeout=60, what="reconnected")
    publish(broker, [loadgen.score_message("d1", s) for s in range(11, 21)])
    wait_for(lambda: count(collector) == 20, what="scores after the broker restart")


def test_receiver_process_killed_during_ingest_is_replaced_and_nothing_is_lost(tmp_path, broker):
    """kill -9 of the MQTT receiver process: the collector starts a new one; what the dead one received but
    the writer had not acknowledged is redelivered by the broker and stored exactly once."""
    config = server_config(tmp_path, broker, ingest={"batch_max": 10})  # small commits: slow enough to kill
    c = Collector(config).start()
    try:
        wait_for(c.mqtt.connected.is_set, what="connected")
        first = c.mqtt.pid
        n = 4000
        publish(broker, [loadgen.score_message("d1", s) for s in range(1, n + 1)])
        wait_for(lambda: count(c) >= 500, what="ingest under way")
        os.kill(first, signal.SIGKILL)
        assert count(c) < n, "ingest finished before the kill: make the batches smaller"
        wait_for(lambda: c.mqtt.restarts == 1 and c.mqtt.connected.is_set(), what="a new receiver connected")
        assert c.mqtt.pid != first and not _alive(first)
        wait_for(lambda: count(c) == n, timeout=60, what="every score after the receiver restart")
        assert count(c, "SELECT count(DISTINCT seq) FROM scores") == n
        assert count(c, "SELECT sum(n) FROM rollup_5m") == n
        assert count(c, "SELECT committed_seq FROM devices WHERE device_id = 'd1'") == n
        health = get_json(f"http://127.0.0.1:{c.http_port}/healthz")
        assert health["mqtt"]["receiver_restarts"] == 1 and health["mqtt"]["receiver_pid"] == c.mqtt.pid
        assert "amgs_mqtt_receiver_restarts_total 1" in get_text(f"http://127.0.0.1:{c.http_port}/metrics")
    finally:
        c.stop()
    assert not _alive(c.mqtt.pid), "the receiver outlived the collector's stop"


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status and "\nState:\tX" not in status


def _children(pid: int) -> list[int]:
    return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_collector_started_before_the_broker_says_so_then_connects(tmp_path, broker):
    broker.stop()
    c = Collector(server_config(tmp_path, broker)).start()
    try:
        health = wait_for(
            lambda: (h := get_json(f"http://127.0.0.1:{c.http_port}/healthz"))["mqtt"]["last_error"] and h,
            what="the unreachable broker reported",
        )
        assert health["status"] == "degraded" and f":{broker.port}" in health["mqtt"]["last_error"]
        broker.start()
        wait_for(c.mqtt.connected.is_set, timeout=60, what="connected once the broker is up")
        publish(broker, [loadgen.score_message("d1", s) for s in range(1, 11)])
        wait_for(lambda: count(c) == 10, what="scores stored")
        assert get_json(f"http://127.0.0.1:{c.http_port}/healthz")["mqtt"]["last_error"] is None
    finally:
        c.stop()


def _ack_seen(watcher):
    ack = watcher.json(ack_topic("lab", "d1"))
    return ack["committed_seq"] if ack else 0


@pytest.mark.slow
def test_kill_9_during_ingest_loses_nothing_acknowledged(tmp_path, broker):
    cfg = tmp_path / "server.toml"
    cfg.write_text(
        f'[mqtt]\nport = {broker.port}\nclient_id = "collector-kill"\n'
        f'[storage]\nstate_dir = "{tmp_path / "state"}"\n'
        "[http]\nport = 0\n[ingest]\nbatch_max = 10\nbatch_wait_ms = 5\n"  # small commits: slow enough to kill mid-way
    )
    env = dict(os.environ, PYTHONUNBUFFERED="1")

    def start():
        return subprocess.Popen(
            [sys.executable, "-m", "amgs.cli", "server", "run", "--config", str(cfg)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "collector.log", "ab"),
        )

    db_path = tmp_path / "state" / "collector.db"

    def stored():
        try:
            with sqlite3.connect(db_path, timeout=10) as conn:
                return conn.execute("SELECT count(*) FROM scores").fetchone()[0]
        except sqlite3.Error:
            return 0

    proc = start()
    watcher = Watcher(broker.port, [ack_topic("lab", "d1")])
    try:
        # a retained status reaches the collector only through its subscription: once stored, it is subscribed
        loadgen.publish_all(
            "127.0.0.1", broker.port, [(status_topic("lab", "d1"), _status_payload())], retain=True
        )
        wait_for(lambda: _device_state(db_path) == "online", timeout=30, what="collector subscribed")
        n = 4000
        msgs = [loadgen.score_message("d1", s) for s in range(1, n + 1)]
        publish(broker, msgs)
        wait_for(lambda: stored() >= 500, what="ingest under way")
        receivers = _children(proc.pid)
        assert len(receivers) == 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        # the orphaned receiver exits at once, so it cannot fight the restarted collector over the session
        wait_for(lambda: not _alive(receivers[0]), timeout=10, what="the receiver to exit")
        acknowledged = _ack_seen(watcher)
        after_kill = stored()
        assert after_kill < n, "ingest finished before the kill: make the batch smaller"
        with sqlite3.connect(db_path) as conn:
            seqs = {r[0] for r in conn.execute("SELECT seq FROM scores")}
        assert set(range(1, acknowledged + 1)) <= seqs  # everything the collector confirmed is on disk
        proc = start()
        wait_for(lambda: stored() == n, timeout=120, what="all scores after restart")
        wait_for(lambda: _ack_seen(watcher) == n, what="final watermark")
        with sqlite3.connect(db_path) as conn:
            assert conn.execute("SELECT count(DISTINCT seq), min(seq), max(seq) FROM scores").fetchone() == (
                n,
                1,
                n,
            )
            assert conn.execute("SELECT sum(n) FROM rollup_5m").fetchone()[0] == n  # no double counting
            assert conn.execute("SELECT missing_open, lost_total FROM devices").fetchone() == (0, 0)
    finally:
        watcher.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def _status_payload() -> bytes:
    from amgs.contract import encode

    return encode(loadgen.status_message("d1"))


def _device_state(db_path):
    try:
        with sqlite3.connect(db_path, timeout=10) as conn:
            row = conn.execute("SELECT state FROM devices WHERE device_id = 'd1'").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def test_full_database_acknowledges_nothing_and_recovers_after_restart(tmp_path, broker):
    """storage.max_db_mb reached (as a full disk): commits fail, /healthz says so, nothing is PUBACKed;
    a restart with room stores every score exactly once from the broker's redelivery."""
    small = server_config(tmp_path, broker, storage={"max_db_mb": 0.4}, ingest={"retry_backoff_s": 0.2})
    full = Collector(small).start()
    wait_for(full.mqtt.connected.is_set, what="connected")
    n = 3000
    publish(broker, [loadgen.score_message("d1", s) for s in range(1, n + 1)])
    wait_for(lambda: full.stats.commit_errors > 0, what="a failed commit")
    health_code, health = _get_status(f"http://127.0.0.1:{full.http_port}/healthz")
    assert health_code == 503 and "full" in " ".join(health["problems"])
    stored_before = count(full)
    assert stored_before < n
    full.stop()
    roomy = Collector(server_config(tmp_path, broker)).start()
    try:
        wait_for(lambda: count(roomy) == n, timeout=60, what="all scores after the restart")
        assert count(roomy, "SELECT committed_seq FROM devices") == n
        assert count(roomy, "SELECT sum(n) FROM rollup_1h") == n
    finally:
        roomy.stop()


def _get_status(url):
    import urllib.error

    try:
        return 200, get_json(url)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_run_notifies_systemd_feeds_the_watchdog_and_stops_on_sigterm(tmp_path, broker):
    import socket

    cfg = tmp_path / "server.toml"
    cfg.write_text(
        f'[mqtt]\nport = {broker.port}\nclient_id = "collector-notify"\n'
        f'[storage]\nstate_dir = "{tmp_path / "state"}"\n[http]\nport = 0\n'
    )
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(30)
    env = dict(os.environ, NOTIFY_SOCKET=address, WATCHDOG_USEC="400000")
    proc = subprocess.Popen(
        [sys.executable, "-m", "amgs.cli", "server", "run", "--config", str(cfg)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "collector.log", "ab"),
        start_new_session=True,
    )
    try:
        seen = [sock.recv(100).decode() for _ in range(3)]
        assert seen[0] == "READY=1" and seen[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
        receivers = _children(proc.pid)
        os.killpg(proc.pid, signal.SIGTERM)  # as systemd does: every process of the service gets it
        while (message := sock.recv(100).decode()) == "WATCHDOG=1":
            pass
        assert message == "STOPPING=1"
        assert proc.wait(20) == 0
        assert receivers and not any(_alive(pid) for pid in receivers)
        log = (tmp_path / "collector.log").read_text()
        assert "Traceback" not in log and "receiver process exited" not in log, log
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()


def test_crops_are_requested_from_devices_stored_and_served(collector, broker):
    from server_support import http_error

    from amgs.contract import command_topic, crop_topic
    from amgs.server.ingest.crops import CropRequester
    from amgs.server.jobs import JobContext

    now = time.time()
    msgs = [dict(loadgen.score_message("d1", s, t=now - (20 - s) * 10), has_crop=True) for s in range(1, 21)]
    publish(broker, msgs)
    wait_for(lambda: count(collector) == 20, what="scores")
    device = Watcher(broker.port, [command_topic("lab", "d1")])
    try:
        time.sleep(0.3)
        job = CropRequester()
        ctx = JobContext(collector.config, collector.db, collector.publish, collector.stats)
        job(ctx)
        command = wait_for(lambda: device.json(command_topic("lab", "d1")), what="send_crops command")
        assert command["command"] == "send_crops"
        wanted = {m["msg_id"] for m in msgs[-12:]}  # the 12 most recent (ingest.crops_per_cage)
        assert set(command["msg_ids"]) == wanted
        jpeg = b"\xff\xd8\xff\xe0" + b"face" * 100
        loadgen.publish_all(
            "127.0.0.1", broker.port, [(crop_topic("lab", "d1", m), jpeg) for m in wanted], qos=0
        )
        wait_for(lambda: count(collector, "SELECT count(*) FROM crops") == 12, what="crops stored")
        device.history.clear()
        job(ctx)  # nothing missing any more: no new request
        base = f"http://127.0.0.1:{collector.http_port}"
        listed = get_json(base + "/api/crops?cage_id=c1")
        assert {c["msg_id"] for c in listed} == wanted
        with urllib.request.urlopen(base + listed[0]["url"]) as r:
            assert r.read() == jpeg and r.headers["Content-Type"] == "image/jpeg"
        collector.app.dependency_overrides.clear()  # the API alone (tests/test_web_auth.py tests the login)
        code, body = http_error(base + "/api/devices/d1/commands", b'{"command": "reboot"}', "POST")
        assert code == 400 and "command" in body["detail"]
        code, body = http_error(base + "/api/devices/d1/commands", b'{"command": "publish_status"}', "POST")
        assert code == 200
        wait_for(
            lambda: device.json(command_topic("lab", "d1"))["command"] == "publish_status", what="command"
        )
        assert not [p for _, p in device.history if b"send_crops" in p]
    finally:
        device.close()


def test_an_unexpected_error_on_one_message_quarantines_it_and_keeps_the_rest(collector, broker, monkeypatch):
    """Fault injection: storing one device's status raises (a stand-in for a bug); the batch is retried
    message by message, that message is quarantined with the error, every score is stored."""
    from amgs.contract import encode
    from amgs.server.ingest.store import Ingestor

    original = Ingestor._store_status

    def broken(self, c, now):
        if c.device_id == "bad":
            raise RuntimeError("injected fault")
        return original(self, c, now)

    monkeypatch.setattr(Ingestor, "_store_status", broken)
    items = [loadgen.score_payload(loadgen.score_message("d1", s)) for s in range(1, 51)]
    items.insert(25, (status_topic("lab", "bad"), encode(loadgen.status_message("bad"))))
    loadgen.publish_all("127.0.0.1", broker.port, items)
    wait_for(lambda: count(collector) == 50, what="all scores despite the fault")
    reason = wait_for(lambda: count(collector, "SELECT reason FROM quarantine"), what="quarantined status")
    assert "injected fault" in reason
    assert get_json(f"http://127.0.0.1:{collector.http_port}/healthz")["status"] == "ok"


def test_conflicting_duplicate_is_counted_in_metrics(collector, broker):
    msg = loadgen.score_message("d1", 1)
    publish(broker, [msg])
    wait_for(lambda: count(collector) == 1, what="1 score")
    publish(broker, [{**msg, "cage_id": "elsewhere"}])
    base = f"http://127.0.0.1:{collector.http_port}"
    wait_for(
        lambda: "amgs_ingest_duplicates_conflicting_total 1" in get_text(base + "/metrics"),
        what="conflict counted",
    )
    assert count(collector) == 1
