"""Device agent benchmark: pipeline throughput vs raw invoke, backlog drain rate, RSS. One run, side by side.

    .venv/bin/python bench/bench_device.py            # defaults: 40 frames, 8640 backlog
    .venv/bin/python bench/bench_device.py --frames 80 --backlog 8640

1. Throughput on ONE core (the process is pinned with sched_setaffinity): raw ``Model.run`` on a
   prepared input vs the whole agent (folder replay of 1280x720 JPEG scenes -> decode -> region crop
   -> quality/motion -> preprocess -> invoke -> record -> SQLite commit -> MQTT publish to a real
   local Mosquitto). Burst of 1 (every frame scored) and burst of 5 (1 of 5 scored).
2. Backlog drain: 8,640 queued scores (a day at one per 10 s) published through a real Mosquitto,
   broker mode (delete on PUBACK) and collector mode (delete on a collector's ack watermark).
   Target: < 10 s.
3. RSS of an agent process with the model loaded, after scoring (VmRSS and peak VmHWM). Target <= 200 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def make_scenes(folder: Path, n: int) -> None:
    from datetime import UTC, datetime, timedelta

    from amgs.synth.dataset import sample_aus
    from amgs.synth.faces import render_scene, sample_params

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    base = []
    for i in range(min(n, 8)):  # render a few, copy them under new names (rendering is the slow part)
        p = sample_params(rng, sample_aus(rng, bool(i % 2)))
        base.append(render_scene(p, frame=(1280, 720), face_px=360, rng=rng).image)
    for i in range(n):
        name = (t0 + timedelta(seconds=i)).strftime("%Y%m%d_%H%M%S.jpg")
        base[i % len(base)].save(folder / name, quality=90)


def config(state: Path, frames: Path, port: int, burst: int, confirm: str = "broker"):
    from amgs.device.config import DeviceConfig

    return DeviceConfig.model_validate(
        {
            "device": {"id": "bench", "site": "lab", "state_dir": str(state)},
            "model": {"allow_synthetic": True},  # the shipped model is synthetic-trained
            "sources": [{"kind": "folder", "name": "replay", "path": str(frames)}],
            "views": [{"name": "box", "source": "replay", "cage_id": "C1", "region": [200, 40, 880, 640]}],
            "schedule": {"interval_s": 0, "burst_frames": burst},
            "selection": {"min_sharpness": 0, "min_exposure": 1, "max_exposure": 254},
            "mqtt": {"host": "127.0.0.1", "port": port},
            "delivery": {"confirm": confirm},
            "agent": {"exit_when_done": True, "done_timeout_s": 30},
        }
    )


def bench_invoke(scorer, n: int) -> float:
    from amgs.preprocess import to_model_input

    spec = scorer.manifest.input
    x = to_model_input(
        np.random.default_rng(0).integers(0, 256, (spec.height, spec.width, 3), np.uint8), spec
    )
    scorer.model.run(x)
    t0 = time.perf_counter()
    for _ in range(n):
        scorer.model.run(x)
    return (time.perf_counter() - t0) / n


def bench_pipeline(
    scorer, frames: Path, port: int, burst: int, tmp: Path
) -> tuple[float, float, float, int, int]:
    """(steady-state seconds from the first burst's start to the last burst's end, seconds spent in
    invoke within them, whole run incl. start-up and shutdown, frames seen, frames scored).
    The delivery thread publishes meanwhile, on the same core."""
    from amgs.device.agent import Agent

    agent = Agent(config(tmp / f"state-b{burst}", frames, port, burst), scorer=scorer)
    marks: list[float] = []
    invoke_ms: list[float] = []
    run_burst = agent.run_burst

    def timed(name: str) -> int:
        if not marks:
            marks.append(time.perf_counter())
        n = run_burst(name)
        if n:
            marks[1:] = [time.perf_counter()]
            invoke_ms.append(scorer.model.last_invoke_ms)
        return n

    agent.run_burst = timed  # type: ignore[method-assign]
    t0 = time.perf_counter()
    agent.run()
    total = time.perf_counter() - t0
    snap = agent.health.snapshot()["frames"]
    return marks[-1] - marks[0], sum(invoke_ms) / 1000, total, snap.get("seen", 0), snap.get("scored", 0)


class Acker:
    """A minimal collector for the drain benchmark: acks the highest contiguous seq every 20 ms."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from amgs.contract import score_topic

        self.seqs: set[int] = set()
        self.committed = 0
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-acker")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(score_topic("lab", "bench"), 1)
        self.client.on_message = self._on_message  # bench only: parse in the callback for speed
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.stop = threading.Event()
        threading.Thread(target=self._ack_loop, daemon=True).start()

    def _on_message(self, c, u, msg) -> None:
        seq = json.loads(msg.payload)["seq"]
        with self.lock:
            self.seqs.add(seq)

    def _ack_loop(self) -> None:
        from amgs.contract import Ack, ack_topic, utc_now

        while not self.stop.wait(0.02):
            with self.lock:
                while self.committed + 1 in self.seqs:
                    self.committed += 1
                w = self.committed
            ack = Ack.build(device_id="bench", committed_seq=w, at=utc_now())
            self.client.publish(ack_topic("lab", "bench"), ack.encode(), qos=1, retain=True)

    def close(self) -> None:
        self.stop.set()
        self.client.disconnect()
        self.client.loop_stop()


def bench_drain(n: int, port: int, tmp: Path, confirm: str) -> float:
    from amgs.contract import ScoreDraft, new_msg_id
    from amgs.device.delivery import Delivery
    from amgs.device.health import Health, status_message
    from amgs.device.outbox import Outbox

    state = tmp / f"drain-{confirm}"
    cfg = config(state, tmp, port, 1, confirm)
    box = Outbox(state / "outbox.sqlite3")
    fields = dict(
        device_id="bench",
        site="lab",
        cage_id="C1",
        captured_at="2026-01-01T00:00:00.000Z",
        clock={"synced": True, "boot_id": "b", "monotonic_s": 1.0},
        model={"name": "m", "version": "1", "sha256": "0" * 64},
        p_pain=0.2,
        label="no pain",
        amgs=0.2,
        confidence=0.8,
        needs_review=False,
        quality={"sharpness": 120.5, "exposure": 110.2, "face_px": 320, "motion": 2.1, "asleep": False},
        face_box=[200, 40, 880, 640],
        inference_ms=38.1,
        has_crop=True,
    )
    for start in range(0, n, 1000):
        box.commit([ScoreDraft.build(**fields, msg_id=new_msg_id()) for _ in range(min(1000, n - start))])
    health = Health()

    def status(state_: str) -> dict:
        return status_message(
            device_id="bench", site="lab", state=state_, health=health, delivery_stats={}, last_seq=n,
            model=None, clock=None, views=[], storage_warning=None, state_dir=state,
        )  # fmt: skip

    acker = Acker(port) if confirm == "collector" else None
    time.sleep(0.3)
    delivery = Delivery(cfg, state / "outbox.sqlite3", status)
    t0 = time.perf_counter()
    delivery.start()
    while box.count() > 0 and time.perf_counter() - t0 < 120:
        time.sleep(0.01)
    dt = time.perf_counter() - t0
    delivery.stop(5)
    if acker:
        acker.close()
    left = box.count()
    if left:
        print(f"  WARNING: {left} scores left in the outbox after {dt:.0f} s")
    return dt


def rss_child(frames: str, port: int) -> None:
    """Run in a fresh process: load the agent (model, OpenCV, paho), score the replay, report memory."""
    from amgs.device.agent import Agent

    tmp = Path(tempfile.mkdtemp(prefix="amgs-rss-"))
    agent = Agent(config(tmp / "state", Path(frames), port, 1))
    agent.run()
    status = {
        k: v for k, v in (line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    }
    print(
        json.dumps(
            {
                "rss_mb": int(status["VmRSS"].split()[0]) / 1024,
                "hwm_mb": int(status["VmHWM"].split()[0]) / 1024,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--invokes", type=int, default=30)
    ap.add_argument("--backlog", type=int, default=8640)
    ap.add_argument("--rss-child", nargs=2, metavar=("FRAMES", "PORT"))
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], int(args.rss_child[1]))
        return

    from amgs.broker import LocalBroker
    from amgs.models import DEFAULT_MODEL
    from amgs.runtime import Model
    from amgs.scoring import Scorer

    tmp = Path(tempfile.mkdtemp(prefix="amgs-bench-device-"))
    frames = tmp / "frames"
    make_scenes(frames, args.frames)
    with LocalBroker(workdir=tmp / "broker") as broker:
        # RSS first, in its own process, before this one pins itself.
        out = subprocess.run(
            [sys.executable, __file__, "--rss-child", str(frames), str(broker.port)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        mem = json.loads(out.stdout.strip().splitlines()[-1])

        pin_one_core()
        scorer = Scorer(Model(DEFAULT_MODEL, num_threads=1))
        invoke_s = bench_invoke(scorer, args.invokes)
        p1_s, p1_inv, p1_total, p1_seen, p1_scored = bench_pipeline(scorer, frames, broker.port, 1, tmp)
        p5_s, p5_inv, p5_total, p5_seen, p5_scored = bench_pipeline(scorer, frames, broker.port, 5, tmp)
        drain_broker = bench_drain(args.backlog, broker.port, tmp, "broker")
        drain_collector = bench_drain(args.backlog, broker.port, tmp, "collector")

    print(
        f"aMGS device benchmark ({os.cpu_count()} CPUs here; throughput pinned to 1 core, 1 interpreter thread)"
    )
    print(
        f"  raw invoke (int8 InceptionV3 299x299)      {invoke_s * 1000:7.1f} ms   {1 / invoke_s:6.1f} frames/s"
    )
    print(
        f"  device pipeline, burst 1 (all scored)       {p1_s / p1_scored * 1000:7.1f} ms   "
        f"{p1_scored / p1_s:6.1f} scored/s   pipeline/invoke {p1_s / p1_inv:.2f} (invoke in the same run "
        f"{p1_inv / p1_scored * 1000:.1f} ms)"
    )
    print(
        f"  device pipeline, burst 5 (1 in 5 scored)    {p5_s / p5_seen * 1000:7.1f} ms   "
        f"{p5_seen / p5_s:6.1f} frames seen/s, {p5_scored / p5_s:.1f} scored/s   "
        f"pipeline/invoke per scored frame {p5_s / p5_inv:.2f}"
    )
    print(
        f"  (whole runs incl. start-up, final delivery and shutdown: burst 1 {p1_total:.1f} s, "
        f"burst 5 {p5_total:.1f} s)"
    )
    print(
        f"  backlog drain {args.backlog} scores, broker PUBACK   {drain_broker:7.2f} s    "
        f"{args.backlog / drain_broker:7.0f} scores/s  (target < 10 s)"
    )
    print(
        f"  backlog drain {args.backlog} scores, collector ack   {drain_collector:7.2f} s    "
        f"{args.backlog / drain_collector:7.0f} scores/s  (target < 10 s)"
    )
    print(
        f"  agent RSS after scoring {mem['rss_mb']:.0f} MB, peak {mem['hwm_mb']:.0f} MB  (target <= 200 MB)"
    )
    print(f"  frames: {args.frames} replayed 1280x720 JPEG scenes, region 880x640; {p1_seen} seen at burst 1")


if __name__ == "__main__":
    main()
