"""``amgs demo`` as a user runs it: one command, prints the dashboard URL, an alert fires, Ctrl-C stops cleanly."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_alerts_and_stops_cleanly_on_ctrl_c(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "amgs.cli",
        "demo",
        "--workdir",
        str(tmp_path / "demo"),
        "--port",
        "0",
        "--replay-seconds",
        "15",
        "--variants",
        "1",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen: list[str] = []
    url = alert = None
    deadline = time.monotonic() + 240  # generous: the suite shares two CPU cores
    try:
        while time.monotonic() < deadline and not (url and alert):
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, "demo exited early:\n" + "".join(seen)
                continue
            seen.append(line)
            if m := re.search(r"dashboard: (http://127\.0\.0\.1:\d+/)", line):
                url = m.group(1)
            if re.search(
                r"ALERT (ALERT|HUMANE_ENDPOINT): (SYNTHETIC MODEL: )?(sustained pain|HUMANE ENDPOINT level) in cage",
                line,
            ):
                alert = line
        assert url and alert, "no dashboard URL or pain alert:\n" + "".join(seen)
        with urllib.request.urlopen(url + "api/overview", timeout=10) as r:
            states = {t["cage_id"]: t["state"] for t in json.load(r)["cages"]}
        assert len(states) == 7 and "alert" in states.values()
        assert "SYNTHETIC" in "".join(seen)
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(90) == 0
        except subprocess.TimeoutExpired:
            raise AssertionError("demo did not stop within 90 s of Ctrl-C:\n" + "".join(seen)) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    while not lines.empty():
        seen.append(lines.get())
    out = "".join(seen)
    assert "stopped cleanly" in out, out
    assert (tmp_path / "demo" / "collector" / "collector.db").exists()
    broker_port = int(re.search(r"broker: \w+ on 127\.0\.0\.1:(\d+)", out).group(1))
    with pytest.raises(OSError):  # the broker went down with the demo
        socket.create_connection(("127.0.0.1", broker_port), timeout=1).close()
    with pytest.raises(OSError):  # and so did the dashboard
        urllib.request.urlopen(url, timeout=2)


def _demo_run(workdir, *extra: str) -> str:
    cmd = [sys.executable, "-m", "amgs.cli", "-v", "demo", "--workdir", str(workdir), "--port", "0"]
    cmd += ["--replay-seconds", "10", "--variants", "1", "--duration", "20", *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=workdir.parent)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout + r.stderr


def test_a_second_demo_run_starts_clean_and_every_score_is_confirmed(tmp_path):
    """Outside test: a second `bash scripts/demo.sh` kept the broker's retained watermarks but not the
    collector's database, so devices renumbered after a stale watermark and were never confirmed."""
    import sqlite3

    workdir = tmp_path / "demo"
    _demo_run(workdir)
    out = _demo_run(workdir)
    assert "state directory reset" not in out and "watermark went back" not in out, out[-3000:]
    db = sqlite3.connect(workdir / "collector" / "collector.db")
    rows = db.execute("SELECT device_id, committed_seq, max_seq FROM devices WHERE max_seq > 0").fetchall()
    assert rows and all(committed == top for _, committed, top in rows), rows
    assert db.execute("SELECT min(seq) FROM scores").fetchone()[0] == 1  # numbering started afresh
    kept = _demo_run(workdir, "--keep")  # --keep keeps all three: database, devices and broker
    assert "state directory reset" not in kept and "watermark went back" not in kept, kept[-3000:]
