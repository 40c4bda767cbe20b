"""Shared helpers for the device tests: synthetic replay folders, configs, and a tiny acking collector.

The collector here stands in for the real one (amgs.server): it stores scores by msg_id and publishes
the retained ``amgs.ack/1`` watermark, which is all the device needs to see. It is test-only code.
"""

from __future__ import annotations

import json
import queue
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from amgs.contract import TOPIC_ROOT, ack_topic, decode, encode, status_topic, utc_now

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)


def make_replay(folder: Path, faces: list[Path], step_s: float = 2.0, start: datetime = T0) -> list[str]:
    """Copy face images into ``folder`` with capture times in their names, ``step_s`` apart."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, f in enumerate(faces):
        name = (start + timedelta(seconds=step_s * i)).strftime("%Y%m%d_%H%M%S") + f.suffix
        shutil.copy(f, folder / name)
        names.append(name)
    return names


def synth_faces(synth_set: Path, n: int) -> list[Path]:
    files = sorted((synth_set / "pain").glob("*.jpg")) + sorted((synth_set / "no pain").glob("*.jpg"))
    return [files[i % len(files)] for i in range(n)]


def write_config(path: Path, *, port: int, state: Path, frames: Path, **sections: dict[str, Any]) -> Path:
    """A device config replaying ``frames`` (one frame per burst, every frame scored) to a local broker."""
    base: dict[str, dict[str, Any]] = {
        "device": {"id": "dev1", "site": "lab", "state_dir": str(state)},
        "model": {"allow_synthetic": True},  # the shipped model is synthetic-trained
        "schedule": {"interval_s": 0, "burst_frames": 1},
        "selection": {"min_sharpness": 0, "min_face_px": 16},
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
        "delivery": {"confirm": "collector", "resend_after_s": 2.0, "collector_wait_s": 1.0},
        "agent": {"exit_when_done": True, "done_timeout_s": 30},
    }
    for key, values in sections.items():
        base.setdefault(key, {}).update(values)
    lines = []
    for key, values in base.items():
        lines.append(f"[{key}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    lines += [
        "[[sources]]",
        'name = "replay"',
        'kind = "folder"',
        f"path = {json.dumps(str(frames))}",
        "[[views]]",
        'name = "box1"',
        'source = "replay"',
        'cage_id = "C1"',
        'animal_id = "M1"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


class AckingCollector:
    """Subscribes to scores (persistent session, QoS 1), stores them by msg_id, publishes the watermark."""

    def __init__(self, port: int, site: str = "lab", device: str = "dev1", ack: bool = True) -> None:
        self.site, self.device, self.ack = site, device, ack
        self.by_msg_id: dict[str, dict[str, Any]] = {}
        self.arrivals: list[tuple[int, str]] = []  # (seq, msg_id) in arrival order, duplicates included
        self.statuses: list[dict[str, Any]] = []
        self.committed = 0
        self._seqs: set[int] = set()
        self._events: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="test-collector", clean_session=False
        )
        self.client.reconnect_delay_set(0.2, 1.0)
        self.client.on_connect = lambda c, u, f, rc, p: self._events.put(("connect",))
        self.client.on_message = lambda c, u, m: self._events.put(("message", m.topic, m.payload))
        self.client.connect("127.0.0.1", port)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.client.loop_start()
        self._thread.start()

    def _publish_ack(self, committed: int) -> None:
        ack = {"schema": "amgs.ack/1", "device_id": self.device, "committed_seq": committed, "at": utc_now()}
        self.client.publish(ack_topic(self.site, self.device), encode(ack), qos=1, retain=True)

    def _run(self) -> None:
        unacked = 0
        next_beat = float("inf")
        while not self._stop.is_set():
            if self.ack and time.monotonic() >= next_beat:  # the real collector's watermark heartbeat
                next_beat = time.monotonic() + 0.5
                with self._lock:
                    committed = self.committed
                self._publish_ack(committed)
            try:
                event = self._events.get(timeout=0.1)
            except queue.Empty:
                continue
            if event[0] == "connect":
                self.client.subscribe(
                    [(f"{TOPIC_ROOT}/{self.site}/+/score", 1), (status_topic(self.site, self.device), 1)]
                )
                next_beat = time.monotonic()
                continue
            _, topic, payload = event
            msg = decode(payload)
            with self._lock:
                if msg["schema"] == "amgs.status/1":
                    self.statuses.append(msg)
                    continue
                self.arrivals.append((msg["seq"], msg["msg_id"]))
                self.by_msg_id.setdefault(msg["msg_id"], msg)
                self._seqs.add(msg["seq"])
                while self.committed + 1 in self._seqs:
                    self.committed += 1
                committed = self.committed
            unacked += 1
            if self.ack and (unacked >= 200 or self._events.empty()):  # batch acks as a real collector does
                unacked = 0
                self._publish_ack(committed)

    def seqs(self) -> list[int]:
        with self._lock:
            return sorted(m["seq"] for m in self.by_msg_id.values())

    def wait_for(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.by_msg_id) >= n:
                return
            time.sleep(0.05)
        raise AssertionError(f"collector has {len(self.by_msg_id)} of {n} scores after {timeout} s")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.client.disconnect()
        self.client.loop_stop()
