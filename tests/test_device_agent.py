"""The agent as systemd runs it: a subprocess killed with -9, stopped with SIGTERM, fed bad input and full disks."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from device_helpers import T0, AckingCollector, make_replay, synth_faces, write_config

from amgs.contract import validate
from amgs.device.agent import Agent
from amgs.device.config import load_config
from amgs.device.outbox import Outbox


def _agent_cmd(cfg: Path) -> list[str]:
    return [sys.executable, "-m", "amgs.cli", "device", "run", "--config", str(cfg)]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    return env


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_nothing(tmp_path, broker, synth_set):
    n = 30
    frames = tmp_path / "frames"
    names = make_replay(frames, synth_faces(synth_set, n))
    cfg = write_config(tmp_path / "d.toml", port=broker.port, state=tmp_path / "state", frames=frames)
    # Pace the replay so kills land while scoring, committing and publishing.
    cfg.write_text(
        cfg.read_text().replace('kind = "folder"', 'kind = "folder"\nrealtime = true\nspeed = 5.0')
    )
    collector = AckingCollector(broker.port)
    rng = random.Random(7)
    kills = 0
    try:
        for trial in range(10):
            outage = trial in (3, 4, 7)  # some kills land on a backlog waiting for the broker
            if outage:
                broker.stop()
            proc = subprocess.Popen(_agent_cmd(cfg), env=_env(), stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.8, 3.0))  # start-up (model load) is ~1 s
            if outage:
                broker.start()
                time.sleep(rng.uniform(0.0, 1.0))  # reconnecting and draining
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
        final = subprocess.run(_agent_cmd(cfg), env=_env(), capture_output=True, text=True, timeout=180)
        assert final.returncode == 0, final.stderr[-2000:]
        collector.wait_for(n, timeout=30)
    finally:
        collector.close()
    assert kills >= 6
    # The broker published the last will for the killed processes (retained status "offline").
    wills = [s for s in collector.statuses if s["state"] == "offline" and "last will" in (s["reason"] or "")]
    assert wills, [s["reason"] for s in collector.statuses]
    scores = list(collector.by_msg_id.values())
    # No frame lost, none scored twice: one score per replayed frame, seqs contiguous from 1.
    assert len(scores) == n
    assert sorted(s["seq"] for s in scores) == list(range(1, n + 1))
    captured = sorted(s["captured_at"] for s in scores)
    assert len(set(captured)) == n
    assert captured[0].startswith("2026-03-01T08:00:00") and len(names) == n
    # Duplicates on the wire are only redeliveries: every seq always carried one and the same msg_id.
    seen: dict[int, str] = {}
    for seq, msg_id in collector.arrivals:
        assert seen.setdefault(seq, msg_id) == msg_id
    assert Outbox(tmp_path / "state" / "outbox.sqlite3").count() == 0


def test_sigterm_finishes_burst_flushes_and_goes_offline(tmp_path, broker, synth_set):
    frames = tmp_path / "frames"
    make_replay(frames, synth_faces(synth_set, 40), step_s=1.0)
    cfg = write_config(
        tmp_path / "d.toml",
        port=broker.port,
        state=tmp_path / "state",
        frames=frames,
        agent={"exit_when_done": False},
    )
    cfg.write_text(
        cfg.read_text().replace('kind = "folder"', 'kind = "folder"\nrealtime = true\nspeed = 2.0')
    )
    collector = AckingCollector(broker.port)
    try:
        proc = subprocess.Popen(_agent_cmd(cfg), env=_env(), stderr=subprocess.PIPE, text=True)
        collector.wait_for(2, timeout=60)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err[-2000:]
        last_seq = Outbox(tmp_path / "state" / "outbox.sqlite3").last_seq()
        collector.wait_for(last_seq, timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (
            collector.statuses and collector.statuses[-1]["state"] == "offline"
        ):
            time.sleep(0.05)
    finally:
        collector.close()
    assert last_seq < 40, "the agent should have stopped early"
    assert collector.seqs() == list(range(1, last_seq + 1))  # everything committed was flushed
    offline = collector.statuses[-1]
    assert offline["state"] == "offline" and offline["last_seq"] == last_seq
    assert offline["reason"] == "stopped"


def test_corrupt_and_truncated_images_are_skipped_and_counted(tmp_path, broker, scorer, synth_set):
    frames = tmp_path / "frames"
    names = make_replay(frames, synth_faces(synth_set, 4))
    good = (frames / names[0]).read_bytes()
    (frames / "20260301_080001.jpg").write_bytes(b"\xff\xd8\xff not a jpeg at all")
    (frames / "20260301_080003.jpg").write_bytes(good[: len(good) // 3])  # truncated
    (frames / "20260301_080005.png").write_bytes(b"")  # empty
    cfg = write_config(tmp_path / "d.toml", port=broker.port, state=tmp_path / "state", frames=frames)
    collector = AckingCollector(broker.port)
    try:
        agent = Agent(load_config(cfg), scorer=scorer)
        assert agent.run() == 0
        collector.wait_for(4, timeout=10)
    finally:
        collector.close()
    assert collector.seqs() == [1, 2, 3, 4]
    status = agent.status("online")
    validate(status, "amgs.status/1")
    assert status["rejected"]["unreadable"] == 3
    assert status["frames"]["seen"] == 7 and status["frames"]["scored"] == 4


def test_crop_cap_drops_images_first_and_keeps_scores(tmp_path, broker, scorer, synth_set):
    frames = tmp_path / "frames"
    make_replay(frames, synth_faces(synth_set, 6))
    cfg = write_config(
        tmp_path / "d.toml",
        port=broker.port,
        state=tmp_path / "state",
        frames=frames,
        storage={"crops_max_mb": 0.02},  # about one crop
    )
    collector = AckingCollector(broker.port)
    try:
        agent = Agent(load_config(cfg), scorer=scorer)
        agent.run()
        collector.wait_for(6, timeout=10)
    finally:
        collector.close()
    assert collector.seqs() == list(range(1, 7))  # every score kept and delivered
    crops = list((tmp_path / "state" / "crops").glob("*/*.jpg"))
    assert 1 <= len(crops) < 6 and sum(c.stat().st_size for c in crops) <= 0.02 * 1024 * 1024
    status = agent.status("online")
    assert status["state"] == "degraded"
    assert "crop cap" in status["storage_warning"] and "oldest" in status["storage_warning"]
    offline = collector.statuses[-1]
    assert "crop cap" in (offline["storage_warning"] or "")


def test_disk_low_keeps_no_crops_but_all_scores(tmp_path, broker, scorer, synth_set):
    frames = tmp_path / "frames"
    make_replay(frames, synth_faces(synth_set, 3))
    cfg = write_config(
        tmp_path / "d.toml",
        port=broker.port,
        state=tmp_path / "state",
        frames=frames,
        storage={"min_free_mb": 1e12},  # "the disk is always below the free-space floor"
    )
    collector = AckingCollector(broker.port)
    try:
        agent = Agent(load_config(cfg), scorer=scorer)
        agent.run()
        collector.wait_for(3, timeout=10)
    finally:
        collector.close()
    scores = list(collector.by_msg_id.values())
    assert len(scores) == 3 and not any(s["has_crop"] for s in scores)
    assert not list((tmp_path / "state" / "crops").glob("*/*.jpg"))
    status = agent.status("online")
    assert status["state"] == "degraded" and status["storage_warning"].startswith("DISK LOW")
    assert "scores are still stored" in status["storage_warning"]


def test_outbox_cap_drops_oldest_scores_loudly(tmp_path, scorer, synth_set):
    frames = tmp_path / "frames"
    make_replay(frames, synth_faces(synth_set, 3))
    cfg = write_config(tmp_path / "d.toml", port=1, state=tmp_path / "state", frames=frames)
    agent = Agent(load_config(cfg), scorer=scorer)
    agent.outbox.max_records = 2  # the config floor is 100; shrink it to see the behaviour quickly
    assert agent.sources["replay"].ready()
    for _ in range(3):
        agent.run_burst("replay")
    assert agent.outbox.count() == 2 and agent.outbox.dropped() == 1
    assert [p.seq for p in agent.outbox.pending()] == [2, 3]
    status = agent.status("online")
    assert status["storage_warning"].startswith("OUTBOX FULL: 1 undelivered score(s) dropped")


def test_video_file_source_via_opencv(tmp_path, broker, scorer):
    cv2 = pytest.importorskip("cv2")
    import numpy as np

    from amgs.contract import AU_KEYS
    from amgs.synth.faces import FaceParams, render_scene

    video = tmp_path / "box_20260301_080000.avi"  # capture time of frame 0 from the name
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (640, 360))
    assert writer.isOpened()
    rng = np.random.default_rng(1)
    for i in range(6):
        p = FaceParams(au=dict.fromkeys(AU_KEYS, 0.4 * (i % 3)), texture_seed=i)
        scene = render_scene(p, frame=(640, 360), face_px=200, rng=rng)
        writer.write(cv2.cvtColor(np.asarray(scene.image), cv2.COLOR_RGB2BGR))
    writer.release()
    cfg = tmp_path / "d.toml"
    cfg.write_text(
        f"""
[device]
id = "dev1"
site = "lab"
state_dir = "{tmp_path / "state"}"
[model]
allow_synthetic = true
[[sources]]
name = "video"
kind = "opencv"
uri = "{video}"
[[views]]
name = "box1"
source = "video"
cage_id = "C1"
region = [100, 20, 440, 320]
[schedule]
interval_s = 0.35
burst_frames = 2
[selection]
min_sharpness = 0
[mqtt]
port = {broker.port}
[delivery]
confirm = "broker"
[agent]
exit_when_done = true
done_timeout_s = 10
"""
    )
    listener = AckingCollector(broker.port, ack=False)
    try:
        agent = Agent(load_config(cfg), scorer=scorer)
        assert agent.run() == 0
        listener.wait_for(2, timeout=10)
    finally:
        listener.close()
    scores = sorted(listener.by_msg_id.values(), key=lambda s: s["seq"])
    # 6 frames at 5 fps = 1.2 s; bursts of 2 frames every 0.35 s of video time -> bursts at 0, 0.4, 0.8 s.
    assert len(scores) == 3
    assert all(s["face_box"] == [100, 20, 440, 320] and s["quality"]["face_px"] == 320 for s in scores)
    assert scores[0]["captured_at"].startswith("2026-03-01T08:00:00")
    assert scores[2]["captured_at"] > scores[1]["captured_at"] > scores[0]["captured_at"]
    # The replay position is committed with the scores: a second run scores nothing new.
    again = Agent(load_config(cfg), scorer=scorer)
    again.run()
    assert Outbox(tmp_path / "state" / "outbox.sqlite3").last_seq() == 3


def test_wrong_config_exits_non_zero_naming_the_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[device]\nid = "d1"\nsite = "lab"\n[mqtt]\nport = 70000\nhots = "x"\n'
        '[[sources]]\nname = "s"\nkind = "folder"\npath = "/tmp"\n'
        '[[views]]\nname = "v"\nsource = "nope"\ncage_id = "C1"\n'
    )
    r = subprocess.run(_agent_cmd(cfg), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "mqtt.port" in r.stderr and "70000" in r.stderr
    assert "unknown key 'mqtt.hots'" in r.stderr
    out = json.dumps(r.stderr)
    assert "Traceback" not in out


def test_systemd_notify_ready_watchdog_and_stopping(tmp_path, broker, synth_set):
    """Run as systemd would (Type=notify, WatchdogSec=1): READY, periodic WATCHDOG, STOPPING on SIGTERM."""
    import socket

    frames = tmp_path / "frames"
    make_replay(frames, synth_faces(synth_set, 2))
    cfg = write_config(
        tmp_path / "d.toml",
        port=broker.port,
        state=tmp_path / "state",
        frames=frames,
        agent={"exit_when_done": False},
    )
    sock_path = str(tmp_path / "notify")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(sock_path)
    server.settimeout(30)
    env = {**_env(), "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "1000000"}
    proc = subprocess.Popen(_agent_cmd(cfg), env=env, stderr=subprocess.DEVNULL)
    messages: list[str] = []
    try:
        while not any(m.startswith("READY=1") for m in messages):
            messages.append(server.recv(1024).decode())
        t0 = time.monotonic()
        pings = 0
        while pings < 3:  # the replay is done: the main loop idles and keeps pinging
            if server.recv(1024) == b"WATCHDOG=1":
                pings += 1
        assert time.monotonic() - t0 < 5
        proc.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in messages:
            messages.append(server.recv(1024).decode())
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        server.close()
    assert messages[0].startswith("READY=1\nSTATUS=scoring 1 view(s)")


def test_failing_source_is_retried_and_reported(tmp_path, broker, scorer, synth_set):
    import threading

    frames = tmp_path / "not-mounted-yet"
    cfg = write_config(
        tmp_path / "d.toml",
        port=broker.port,
        state=tmp_path / "state",
        frames=frames,
        delivery={"confirm": "broker"},
        agent={"exit_when_done": True, "done_timeout_s": 10},
    )
    agent = Agent(load_config(cfg), scorer=scorer)
    for src in agent.sources.values():
        src.min_backoff_s, src.max_backoff_s = 0.1, 0.4
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while agent.sources["replay"].failures < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        status = agent.status("online")
        assert status["state"] == "degraded" and "source failing for view(s) box1" in status["reason"]
        assert status["views"][0]["source_ok"] is False and "does not exist" in status["views"][0]["error"]
        make_replay(frames, synth_faces(synth_set, 2))  # the share comes back
        thread.join(30)
    finally:
        agent.stop_requested.set()
    assert not thread.is_alive()
    assert Outbox(tmp_path / "state" / "outbox.sqlite3").last_seq() == 2
    assert agent.status("online")["views"][0]["source_ok"] is True


def test_followed_folder_waits_for_new_files(tmp_path, broker, scorer, synth_set):
    import threading

    faces = synth_faces(synth_set, 3)
    frames = tmp_path / "frames"
    make_replay(frames, faces[:1])
    cfg = write_config(
        tmp_path / "d.toml",
        port=broker.port,
        state=tmp_path / "state",
        frames=frames,
        delivery={"confirm": "broker"},
        agent={"exit_when_done": True},  # a followed folder is never "done"
    )
    cfg.write_text(cfg.read_text().replace('kind = "folder"', 'kind = "folder"\nfollow = true'))
    agent = Agent(load_config(cfg), scorer=scorer)
    agent.sources["replay"].idle_poll_s = 0.1
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    box = Outbox(tmp_path / "state" / "outbox.sqlite3")
    try:
        deadline = time.monotonic() + 20
        while box.last_seq() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert box.last_seq() == 1 and thread.is_alive()
        make_replay(frames, faces[1:], start=T0 + timedelta(minutes=1))  # the camera writes two more
        while box.last_seq() < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert box.last_seq() == 3
    finally:
        agent.stop_requested.set()
        thread.join(20)
    assert not thread.is_alive()


def test_several_cameras_and_several_boxes_in_one_frame(tmp_path, broker, scorer, synth_set):
    """One device: camera A sees two observation boxes (one region each), camera B one box."""
    from PIL import Image

    faces = synth_faces(synth_set, 6)
    a, b = tmp_path / "camA", tmp_path / "camB"
    a.mkdir()
    for i in range(3):
        frame = Image.new("RGB", (400, 200), (90, 90, 90))
        frame.paste(Image.open(faces[i]).resize((180, 180)), (10, 10))
        frame.paste(Image.open(faces[i + 3]).resize((180, 180)), (210, 10))
        frame.save(a / f"20260301_08000{i}.jpg", quality=90)
    make_replay(b, faces[:2])
    cfg = tmp_path / "d.toml"
    cfg.write_text(
        f"""
[device]
id = "dev1"
site = "lab"
state_dir = "{tmp_path / "state"}"
[model]
allow_synthetic = true
[[sources]]
name = "camA"
kind = "folder"
path = "{a}"
[[sources]]
name = "camB"
kind = "folder"
path = "{b}"
[[views]]
name = "boxL"
source = "camA"
cage_id = "C1"
region = [10, 10, 180, 180]
[[views]]
name = "boxR"
source = "camA"
cage_id = "C2"
animal_id = "M2"
region = [210, 10, 180, 180]
[[views]]
name = "boxB"
source = "camB"
cage_id = "C3"
[schedule]
interval_s = 0
burst_frames = 1
[selection]
min_sharpness = 0
min_face_px = 16
[mqtt]
port = {broker.port}
[delivery]
confirm = "broker"
[agent]
exit_when_done = true
done_timeout_s = 10
"""
    )
    listener = AckingCollector(broker.port, ack=False)
    try:
        assert Agent(load_config(cfg), scorer=scorer).run() == 0
        listener.wait_for(8, timeout=10)
    finally:
        listener.close()
    scores = list(listener.by_msg_id.values())
    by_view = {v: [s for s in scores if s["view"] == v] for v in ("boxL", "boxR", "boxB")}
    assert {v: len(s) for v, s in by_view.items()} == {"boxL": 3, "boxR": 3, "boxB": 2}
    assert all(s["cage_id"] == "C1" and s["face_box"] == [10, 10, 180, 180] for s in by_view["boxL"])
    assert all(s["cage_id"] == "C2" and s["animal_id"] == "M2" for s in by_view["boxR"])
    assert sorted(s["seq"] for s in scores) == list(range(1, 9))
    # The two boxes of one frame share its capture time; their scores differ (different faces).
    left = sorted(by_view["boxL"], key=lambda s: s["captured_at"])
    right = sorted(by_view["boxR"], key=lambda s: s["captured_at"])
    assert [s["captured_at"] for s in left] == [s["captured_at"] for s in right]
