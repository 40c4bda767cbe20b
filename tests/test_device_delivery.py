"""No-loss delivery through a real Mosquitto: outages, collector watermark, broker mode, re-sends."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from device_helpers import AckingCollector, make_replay, synth_faces, write_config
from paho.mqtt.enums import CallbackAPIVersion

from amgs.broker import LocalBroker, free_port
from amgs.contract import encode, score_topic
from amgs.device.agent import Agent
from amgs.device.config import load_config
from amgs.device.outbox import Outbox


def _run_in_thread(agent: Agent) -> threading.Thread:
    t = threading.Thread(target=agent.run, daemon=True)
    t.start()
    return t


def _first_arrival_order(arrivals: list[tuple[int, str]]) -> list[int]:
    seen: list[int] = []
    for seq, _ in arrivals:
        if seq not in seen:
            seen.append(seq)
    return seen


def test_broker_outage_every_score_once_and_in_order(tmp_path, broker, scorer, synth_set):
    n = 12
    frames = tmp_path / "frames"
    make_replay(frames, synth_faces(synth_set, n), step_s=1.0)
    cfg_path = write_config(
        tmp_path / "d.toml",
        port=broker.port,
        state=tmp_path / "state",
        frames=frames,
        agent={"exit_when_done": True, "done_timeout_s": 60},
    )
    # Pace the replay (4 frames per second) so scores keep coming while the broker is down.
    text = cfg_path.read_text().replace('kind = "folder"', 'kind = "folder"\nrealtime = true\nspeed = 4.0')
    cfg_path.write_text(text)
    collector = AckingCollector(broker.port)
    agent = Agent(load_config(cfg_path), scorer=scorer)
    thread = _run_in_thread(agent)
    try:
        collector.wait_for(2, timeout=60)
        broker.stop()
        time.sleep(2.0)  # scores pile up in the outbox meanwhile
        backlog = Outbox(tmp_path / "state" / "outbox.sqlite3").count()
        broker.start()
        thread.join(120)
        assert not thread.is_alive(), "agent did not finish"
        collector.wait_for(n, timeout=30)
    finally:
        agent.stop_requested.set()
        collector.close()
    assert backlog >= 4, f"the outage should have left a backlog, found {backlog}"
    assert collector.seqs() == list(range(1, n + 1))
    assert len(collector.by_msg_id) == n  # exactly once by msg_id
    assert _first_arrival_order(collector.arrivals) == list(range(1, n + 1))
    by_seq = {}
    for seq, msg_id in collector.arrivals:  # a re-sent seq always carries the same msg_id
        assert by_seq.setdefault(seq, msg_id) == msg_id
    assert Outbox(tmp_path / "state" / "outbox.sqlite3").count() == 0
    assert collector.committed == n


def test_collector_mode_keeps_records_until_watermark_then_resends(tmp_path, broker, scorer, synth_set):
    n = 5
    frames = tmp_path / "frames"
    make_replay(frames, synth_faces(synth_set, n))
    cfg_path = write_config(
        tmp_path / "d.toml",
        port=broker.port,
        state=tmp_path / "state",
        frames=frames,
        agent={"exit_when_done": True, "done_timeout_s": 2},
    )
    silent = AckingCollector(broker.port, ack=False)  # receives, never confirms
    try:
        Agent(load_config(cfg_path), scorer=scorer).run()
        silent.wait_for(n, timeout=10)
    finally:
        silent.close()
    outbox = Outbox(tmp_path / "state" / "outbox.sqlite3")
    assert outbox.count() == n, "unconfirmed scores must stay in the outbox"
    first_ids = {m["msg_id"] for m in silent.by_msg_id.values()}

    collector = AckingCollector(broker.port)
    try:
        # Second run: the replay is exhausted (cursor persisted), so it only re-sends what is unconfirmed.
        Agent(load_config(cfg_path), scorer=scorer).run()
        collector.wait_for(n, timeout=10)
    finally:
        collector.close()
    assert set(collector.by_msg_id) == first_ids
    assert outbox.count() == 0 and outbox.last_seq() == n


class _LossyCollector(AckingCollector):
    """Pretends the first delivery of some seqs never reached the database."""

    def __init__(self, port: int, lose: set[int]) -> None:
        self.lose = set(lose)
        super().__init__(port)

    def _run(self) -> None:
        original = self._events.get

        def get(timeout=None):
            while True:
                event = original(timeout=timeout)
                if event[0] == "message" and b'"amgs.score/1"' in event[2]:
                    from amgs.contract import decode

                    seq = decode(event[2])["seq"]
                    if seq in self.lose:
                        self.lose.discard(seq)
                        continue
                return event

        self._events.get = get  # type: ignore[method-assign]
        super()._run()


def test_unconfirmed_scores_are_resent_after_timeout(tmp_path, broker, scorer, synth_set):
    n = 6
    frames = tmp_path / "frames"
    make_replay(frames, synth_faces(synth_set, n))
    cfg_path = write_config(
        tmp_path / "d.toml",
        port=broker.port,
        state=tmp_path / "state",
        frames=frames,
        delivery={"resend_after_s": 1.0},
    )
    collector = _LossyCollector(broker.port, lose={2, 5})
    try:
        Agent(load_config(cfg_path), scorer=scorer).run()
        collector.wait_for(n, timeout=10)
    finally:
        collector.close()
    assert collector.seqs() == list(range(1, n + 1))
    assert collector.committed == n
    assert Outbox(tmp_path / "state" / "outbox.sqlite3").count() == 0


def test_broker_mode_deletes_on_puback(tmp_path, broker, scorer, synth_set):
    n = 4
    frames = tmp_path / "frames"
    make_replay(frames, synth_faces(synth_set, n))
    cfg_path = write_config(
        tmp_path / "d.toml",
        port=broker.port,
        state=tmp_path / "state",
        frames=frames,
        delivery={"confirm": "broker"},
        agent={"exit_when_done": True, "done_timeout_s": 10},
    )
    listener = AckingCollector(broker.port, ack=False)  # no watermark at all
    try:
        Agent(load_config(cfg_path), scorer=scorer).run()
        listener.wait_for(n, timeout=10)
    finally:
        listener.close()
    assert listener.seqs() == list(range(1, n + 1))
    assert Outbox(tmp_path / "state" / "outbox.sqlite3").count() == 0
    offline = listener.statuses[-1]
    assert offline["state"] == "offline" and offline["last_seq"] == n


def test_lost_state_directory_continues_numbering_after_the_collector(tmp_path, broker, scorer, synth_set):
    """A device whose outbox was wiped must not re-use seqs the collector already committed."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from amgs.contract import ack_topic, encode, utc_now

    old = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="old-collector")
    old.connect("127.0.0.1", broker.port)
    old.loop_start()
    ack = {"schema": "amgs.ack/1", "device_id": "dev1", "committed_seq": 50, "at": utc_now()}
    old.publish(ack_topic("lab", "dev1"), encode(ack), qos=1, retain=True).wait_for_publish(5)
    old.disconnect()
    old.loop_stop()

    frames = tmp_path / "frames"
    make_replay(frames, synth_faces(synth_set, 3))
    cfg_path = write_config(tmp_path / "d.toml", port=broker.port, state=tmp_path / "state", frames=frames)
    collector = AckingCollector(broker.port)
    collector.committed = 50  # this collector already stored 1..50 from the device's previous life
    try:
        Agent(load_config(cfg_path), scorer=scorer).run()
        collector.wait_for(3, timeout=30)
    finally:
        collector.close()
    assert collector.seqs() == [51, 52, 53], collector.arrivals
    assert Outbox(tmp_path / "state" / "outbox.sqlite3").last_seq() == 53


def _make_tls(d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=amgs test CA")  # fmt: skip
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    )
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "san.ext")  # fmt: skip


def test_tls_with_username_and_password_file(tmp_path, scorer, synth_set):
    if shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("openssl and mosquitto_passwd are needed to build a TLS broker")
    tls = tmp_path / "tls"
    _make_tls(tls)
    (tmp_path / "passwd").write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(tmp_path / "passwd"), "dev1", "s3cret-pw"], check=True)
    (tmp_path / "dev1.password").write_text("s3cret-pw\n")
    tls_port = free_port()
    extra = (
        f"password_file {tmp_path / 'passwd'}\n"
        f"listener {tls_port} 127.0.0.1\ncafile {tls / 'ca.crt'}\ncertfile {tls / 'server.crt'}\n"
        f"keyfile {tls / 'server.key'}\n"
    )
    frames = tmp_path / "frames"
    make_replay(frames, synth_faces(synth_set, 2))
    with LocalBroker(workdir=tmp_path / "broker", allow_anonymous=False, extra_conf=extra) as broker:
        cfg_path = write_config(
            tmp_path / "d.toml",
            port=tls_port,
            state=tmp_path / "state",
            frames=frames,
            mqtt={
                "host": "localhost",
                "username": "dev1",
                "password_file": str(tmp_path / "dev1.password"),
                "tls_ca_file": str(tls / "ca.crt"),
            },
            delivery={"confirm": "broker"},
            agent={"exit_when_done": True, "done_timeout_s": 15},
        )
        got: list[bytes] = []
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="verifier")
        sub.username_pw_set("dev1", "s3cret-pw")
        sub.on_connect = lambda c, u, f, rc, p: c.subscribe(score_topic("lab", "dev1"), 1)
        sub.on_message = lambda c, u, m: got.append(m.payload)
        sub.connect("127.0.0.1", broker.port)
        sub.loop_start()
        try:
            time.sleep(0.3)
            Agent(load_config(cfg_path), scorer=scorer).run()
            deadline = time.monotonic() + 10
            while len(got) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            sub.disconnect()
            sub.loop_stop()
    assert len(got) == 2
    assert Outbox(tmp_path / "state" / "outbox.sqlite3").count() == 0


def test_wrong_password_is_reported_not_fatal(tmp_path, scorer, synth_set, caplog):
    (tmp_path / "passwd").write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(tmp_path / "passwd"), "dev1", "right"], check=True)
    (tmp_path / "pw").write_text("wrong-secret\n")
    frames = tmp_path / "frames"
    make_replay(frames, synth_faces(synth_set, 1))
    extra = f"password_file {tmp_path / 'passwd'}\n"
    with LocalBroker(workdir=tmp_path / "broker", allow_anonymous=False, extra_conf=extra) as broker:
        cfg_path = write_config(
            tmp_path / "d.toml",
            port=broker.port,
            state=tmp_path / "state",
            frames=frames,
            mqtt={"username": "dev1", "password_file": str(tmp_path / "pw")},
            delivery={"flush_timeout_s": 0.5},
            agent={"exit_when_done": True, "done_timeout_s": 2},
        )
        agent = Agent(load_config(cfg_path), scorer=scorer)
        assert agent.run() == 0
    status = agent.status("online")
    assert status["state"] == "degraded" and "refused the connection" in status["reason"]
    assert Outbox(tmp_path / "state" / "outbox.sqlite3").count() == 1  # kept for later
    assert "wrong-secret" not in caplog.text


def test_dead_broker_is_reported_and_scores_wait_in_the_outbox(tmp_path, scorer, synth_set):
    frames = tmp_path / "frames"
    make_replay(frames, synth_faces(synth_set, 2))
    cfg_path = write_config(
        tmp_path / "d.toml",
        port=free_port(),  # nothing listens there
        state=tmp_path / "state",
        frames=frames,
        delivery={"flush_timeout_s": 0.2},
        agent={"exit_when_done": True, "done_timeout_s": 1.5},
    )
    agent = Agent(load_config(cfg_path), scorer=scorer)
    assert agent.run() == 0
    status = agent.status("online")
    assert status["state"] == "degraded" and "cannot reach the MQTT broker" in status["reason"]
    assert Outbox(tmp_path / "state" / "outbox.sqlite3").count() == 2


def test_big_backlog_drains_in_order_while_new_scores_join(tmp_path, broker, scorer, synth_set):
    from amgs.contract import new_msg_id

    backlog = 3000
    box = Outbox(tmp_path / "state" / "outbox.sqlite3")
    template = {
        "schema": "amgs.score/1",
        "device_id": "dev1",
        "site": "lab",
        "cage_id": "C1",
        "captured_at": "2026-02-28T08:00:00.000Z",
        "clock": {"synced": False, "boot_id": "old-boot", "monotonic_s": 5.0},
        "model": {"name": "m", "version": "1", "sha256": "0" * 64},
        "p_pain": 0.3,
        "label": "no pain",
        "amgs": 0.3,
        "confidence": 0.7,
        "needs_review": False,
    }
    for _ in range(backlog // 500):
        box.commit([{**template, "msg_id": new_msg_id()} for _ in range(500)])
    frames = tmp_path / "frames"
    make_replay(frames, synth_faces(synth_set, 3))
    cfg_path = write_config(
        tmp_path / "d.toml",
        port=broker.port,
        state=tmp_path / "state",
        frames=frames,
        delivery={"window": 100},
    )
    collector = AckingCollector(broker.port)
    try:
        Agent(load_config(cfg_path), scorer=scorer).run()
        collector.wait_for(backlog + 3, timeout=30)
    finally:
        collector.close()
    assert _first_arrival_order(collector.arrivals) == list(range(1, backlog + 4))
    new = [m for m in collector.by_msg_id.values() if m["seq"] > backlog]
    assert len(new) == 3 and all(m["captured_at"].startswith("2026-03-01") for m in new)
    assert box.count() == 0


def test_collector_commands_send_crops_resend_and_status(tmp_path, broker, scorer, synth_set):
    from amgs.contract import command_topic, crop_topic, utc_now

    frames = tmp_path / "frames"
    make_replay(frames, synth_faces(synth_set, 2))
    cfg_path = write_config(
        tmp_path / "d.toml", port=broker.port, state=tmp_path / "state", frames=frames,
        agent={"exit_when_done": False},
    )  # fmt: skip
    listener = AckingCollector(broker.port, ack=False)
    crops: dict[str, bytes] = {}
    ctl = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="controller")
    ctl.on_connect = lambda c, u, f, rc, p: c.subscribe(crop_topic("lab", "dev1", "x")[:-1] + "+", 0)
    ctl.on_message = lambda c, u, m: crops.__setitem__(m.topic.rsplit("/", 1)[1], m.payload)
    ctl.connect("127.0.0.1", broker.port)
    ctl.loop_start()
    agent = Agent(load_config(cfg_path), scorer=scorer)
    thread = _run_in_thread(agent)

    def command(body: dict) -> None:
        payload = encode({"schema": "amgs.command/1", "at": utc_now(), **body})
        ctl.publish(command_topic("lab", "dev1"), payload, qos=1).wait_for_publish(5)

    try:
        listener.wait_for(2, timeout=30)
        ids = sorted(listener.by_msg_id)
        command({"command": "send_crops", "msg_ids": ids})
        arrivals = len(listener.arrivals)
        command({"command": "resend_from", "seq": 1})
        statuses = len(listener.statuses)
        command({"command": "publish_status"})
        ctl.publish(
            command_topic("lab", "dev1"), b'{"schema": "amgs.command/1", "command": "format_disk"}', qos=1
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            len(crops) == 2 and len(listener.arrivals) >= arrivals + 2 and len(listener.statuses) > statuses
            and agent.delivery.stats["bad_messages"] == 1
        ):  # fmt: skip
            time.sleep(0.05)
    finally:
        agent.stop_requested.set()
        thread.join(20)
        ctl.disconnect()
        ctl.loop_stop()
        listener.close()
    assert sorted(crops) == ids and all(c[:2] == b"\xff\xd8" for c in crops.values())
    resent = listener.arrivals[arrivals:]
    assert set(resent) == {(m["seq"], m["msg_id"]) for m in listener.by_msg_id.values()}
    assert agent.delivery.stats["bad_messages"] == 1  # the malformed command was refused, nothing else
