"""Simulated cage devices for the demo: contract-valid status, score and crop messages over real MQTT.

They stand in for the device agent (``amgs.device``), which needs camera frames and ~40-80 ms of CPU
per image: replaying a 60-hour study for seven cages in two minutes is not possible with live
inference on a small machine. The scores are the real model's scores of rendered synthetic faces
(see ``demo_study``), the messages are built and validated with ``amgs.contract`` like the agent's,
and each device has a last will, a per-device sequence, a boot id and monotonic clock.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime

import numpy as np
import paho.mqtt.client as mqtt

from amgs import __version__
from amgs.contract import crop_topic, encode, format_time, new_msg_id, score_topic, status_topic

from .demo_study import CURVE_MODEL, DemoAnimal, FaceBank, bank_score, curve_score

IMAGES_PER_HOUR = 12
REJECT_REASONS = ("no_face", "blur", "too_dark", "asleep")


def _at(t: float) -> str:
    return format_time(datetime.fromtimestamp(t, UTC))


class SimDevice:
    """One device watching one or more cages (one view per cage)."""

    def __init__(
        self,
        device_id: str,
        site: str,
        animals: list[DemoAnimal],
        bank: FaceBank,
        use_model: bool,
        host: str,
        port: int,
        seed: int,
        surgery_t: float,
        start_t: float,
        crop_every: int = 6,
    ) -> None:
        self.device_id, self.site, self.animals, self.bank = device_id, site, animals, bank
        self.use_model, self.surgery_t, self.crop_every = use_model, surgery_t, crop_every
        self.rng = np.random.default_rng(seed)
        self.seq = 0
        self.boot_id = uuid.uuid4().hex
        self.started = time.monotonic()
        self.frames: dict[str, int] = {"captured": 0, "scored": 0}
        self.rejected: dict[str, int] = dict.fromkeys(REJECT_REASONS, 0)
        self.last_capture: float | None = None
        self.next_image = {a.cage_id: start_t + float(self.rng.uniform(0, 300)) for a in animals}
        self.connected = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"demo-{device_id}", clean_session=True
        )
        will = self._status("offline", time.time(), reason="connection lost (last will)")
        self.client.will_set(status_topic(site, device_id), encode(will), qos=1, retain=True)
        self.client.on_connect = lambda c, u, f, rc, p: self.connected.set()
        self.client.connect_async(host, port, keepalive=15)
        self.client.loop_start()

    def _status(self, state: str, t: float, reason: str | None = None) -> dict:
        return {
            "schema": "amgs.status/1",
            "device_id": self.device_id,
            "site": self.site,
            "state": state,
            "at": _at(t),
            "reason": reason,
            "software": f"amgs-demo {__version__}",
            "uptime_s": round(time.monotonic() - self.started, 1),
            "queue_depth": 0,
            "last_seq": self.seq,
            "last_capture_at": _at(self.last_capture) if self.last_capture else None,
            "inference_ms": 40.0 if self.use_model else None,
            "frames": dict(self.frames),
            "rejected": dict(self.rejected),
            "model": self.bank.model if self.use_model else CURVE_MODEL,
            "clock": {"synced": True, "boot_id": self.boot_id, "monotonic_s": round(time.monotonic(), 3)},
            "views": [
                {"view": f"view{i + 1}", "cage_id": a.cage_id, "animal_id": a.animal_id, "source_ok": True}
                for i, a in enumerate(self.animals)
            ],
        }

    def publish_status(self, t: float, state: str = "online") -> None:
        self.client.publish(
            status_topic(self.site, self.device_id), encode(self._status(state, t)), qos=1, retain=True
        )

    def advance(self, t1: float) -> int:
        """Publish every image captured up to simulated time ``t1``; returns how many scores were sent."""
        sent = 0
        for animal in self.animals:
            while self.next_image[animal.cage_id] <= t1:
                sent += self._capture(animal, self.next_image[animal.cage_id])
                self.next_image[animal.cage_id] += 3600 / IMAGES_PER_HOUR * float(self.rng.uniform(0.6, 1.4))
        return sent

    def _capture(self, animal: DemoAnimal, t: float) -> int:
        self.frames["captured"] += 3
        self.last_capture = t
        for _ in range(2):  # frames the quality gate refused before this usable one
            self.rejected[REJECT_REASONS[int(self.rng.integers(len(REJECT_REASONS)))]] += 1
        hours = (t - self.surgery_t) / 3600
        level = float(np.clip(animal.curve.level(hours, animal.baseline) + self.rng.normal(0, 0.12), 0, 2))
        face = self.bank.pick(self.rng, animal.coat, level)
        s = (
            bank_score(face, self.bank)
            if self.use_model
            else curve_score(self.rng, level, self.bank.threshold)
        )
        self.seq += 1
        self.frames["scored"] += 1
        msg_id = new_msg_id()
        dark = not 7 <= datetime.fromtimestamp(t, UTC).hour < 19
        motion = float(max(0.0, self.rng.normal(2.5 if dark else 1.0, 0.4) * (1 - min(level, 1.6) / 2.2)))
        with_crop = self.seq % self.crop_every == 0
        record = {
            "schema": "amgs.score/1",
            "msg_id": msg_id,
            "seq": self.seq,
            "device_id": self.device_id,
            "site": self.site,
            "cage_id": animal.cage_id,
            "animal_id": animal.animal_id,
            "view": f"view{self.animals.index(animal) + 1}",
            "captured_at": _at(t),
            "clock": {"synced": True, "boot_id": self.boot_id, "monotonic_s": round(time.monotonic(), 3)},
            "model": self.bank.model if self.use_model else CURVE_MODEL,
            "p_pain": s.p_pain,
            "label": s.label,
            "amgs": s.p_pain,
            "confidence": s.confidence,
            "needs_review": s.needs_review,
            "au": s.au,
            "mgs_au": s.mgs_au,
            "quality": {
                "sharpness": 120.0,
                "exposure": 110.0,
                "face_px": 299,
                "motion": round(motion, 3),
                "asleep": bool(not dark and motion < 0.5),
            },
            "inference_ms": s.inference_ms,
            "has_crop": with_crop,
        }
        self.client.publish(score_topic(self.site, self.device_id), encode(record), qos=1)
        if with_crop:
            self.client.publish(crop_topic(self.site, self.device_id, msg_id), face.jpeg, qos=0)
        return 1

    def stop(self, t: float) -> None:
        """A clean shutdown: say offline (retained), then disconnect (no last will)."""
        info = self.client.publish(
            status_topic(self.site, self.device_id),
            json.dumps(self._status("offline", t, reason="demo stopped")).encode(),
            qos=1,
            retain=True,
        )
        try:
            info.wait_for_publish(3)
        except (RuntimeError, ValueError):
            pass
        self.client.disconnect()
        self.client.loop_stop()
