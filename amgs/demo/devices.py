"""Simulated cage devices for the demo: they replace the camera and the per-image inference of the device
agent, and keep its delivery.

Replaying a 60-hour study for seven cages in two minutes cannot run live inference (40-80 ms per image)
on a small machine, so each simulated capture takes a pre-rendered synthetic face and its real model
score (see ``demo_study``). From there the path is the device agent's own (``amgs.device``): the record
is committed to the durable SQLite outbox, which assigns the per-device sequence, and
``amgs.device.delivery.Delivery`` publishes it at QoS 1 and deletes it only when the collector's
retained watermark confirms it; status (with last will) goes the same way. Face crops travel apart, at
QoS 0, as the contract prescribes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt

from amgs import __version__
from amgs.contract import ScoreDraft, Status, crop_topic, format_time, new_msg_id

from .study import CURVE_MODEL, DemoAnimal, FaceBank, bank_score, curve_score

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
        state_dir: Path,
        clock: Callable[[], float],
        crop_every: int = 6,
    ) -> None:
        from amgs.device.config import DeviceConfig
        from amgs.device.delivery import Delivery
        from amgs.device.outbox import Outbox

        self.device_id, self.site, self.animals, self.bank = device_id, site, animals, bank
        self.use_model, self.surgery_t, self.crop_every, self.clock = use_model, surgery_t, crop_every, clock
        self.rng = np.random.default_rng(seed)
        self.boot_id = uuid.uuid4().hex
        self.started = time.monotonic()
        self.frames: dict[str, int] = {"captured": 0, "scored": 0}
        self.rejected: dict[str, int] = dict.fromkeys(REJECT_REASONS, 0)
        self.last_capture: float | None = None
        self.next_image = {a.cage_id: start_t + float(self.rng.uniform(0, 300)) for a in animals}
        state_dir.mkdir(parents=True, exist_ok=True)
        self.cfg = DeviceConfig.model_validate(
            {
                "device": {"id": device_id, "site": site, "state_dir": str(state_dir)},
                "model": {"allow_synthetic": True},  # the demo is a SYNTHETIC study
                "sources": [{"kind": "folder", "name": "simulated", "path": str(state_dir)}],
                "views": [
                    {
                        "name": self._view(a),
                        "source": "simulated",
                        "cage_id": a.cage_id,
                        "animal_id": a.animal_id,
                    }
                    for a in animals
                ],
                "mqtt": {"host": host, "port": port, "reconnect_max_s": 5},
                "delivery": {"confirm": "collector", "resend_after_s": 30, "flush_timeout_s": 3},
                "status": {"interval_s": 5},
            }
        )
        self.outbox = Outbox(state_dir / "outbox.db", self.cfg.storage.outbox_max_records)
        self.faces: dict[
            str, bytes
        ] = {}  # msg_id -> its face (shared bytes from the bank), for crop requests
        self.delivery = Delivery(self.cfg, state_dir / "outbox.db", self._status, crop_reader=self.faces.get)
        self.delivery.start()
        self.crops = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"demo-{device_id}-crops")
        self.crops.connect_async(host, port, keepalive=30)
        self.crops.loop_start()

    def _view(self, animal: DemoAnimal) -> str:
        return f"view{self.animals.index(animal) + 1}"

    def _status(self, state: str) -> dict:
        """The status message Delivery publishes (and its last will); times are simulated time."""
        stats = self.delivery.stats if hasattr(self, "delivery") else {}
        return Status.build(
            device_id=self.device_id,
            site=self.site,
            state=state,
            at=_at(self.clock()),
            reason=None if state == "online" else "stopped or connection lost",
            software=f"amgs-demo {__version__}",
            uptime_s=round(time.monotonic() - self.started, 1),
            queue_depth=int(stats.get("queue_depth", 0)),
            unconfirmed=int(stats.get("unconfirmed", 0)),
            last_seq=self.outbox.last_seq() if hasattr(self, "outbox") else 0,
            last_capture_at=_at(self.last_capture) if self.last_capture else None,
            inference_ms=40.0 if self.use_model else None,
            frames=dict(self.frames),
            rejected=dict(self.rejected),
            model=self.bank.model if self.use_model else CURVE_MODEL,
            clock={"synced": True, "boot_id": self.boot_id, "monotonic_s": round(time.monotonic(), 3)},
            views=[
                {"view": f"view{i + 1}", "cage_id": a.cage_id, "animal_id": a.animal_id, "source_ok": True}
                for i, a in enumerate(self.animals)
            ],
        ).wire()

    def advance(self, t1: float) -> int:
        """Capture every image due up to simulated time ``t1``: commit the scores to the durable outbox
        (one transaction), hand them to delivery, send sampled crops. Returns how many were captured."""
        captured: list[tuple[ScoreDraft, bytes | None]] = []
        for animal in self.animals:
            while self.next_image[animal.cage_id] <= t1:
                captured.append(self._capture(animal, self.next_image[animal.cage_id]))
                self.next_image[animal.cage_id] += 3600 / IMAGES_PER_HOUR * float(self.rng.uniform(0.6, 1.4))
        if captured:
            self.outbox.commit([record for record, _ in captured])
            self.delivery.wake()
            for record, jpeg in captured:
                if jpeg is not None:
                    self.crops.publish(crop_topic(self.site, self.device_id, record.msg_id), jpeg, qos=0)
        return len(captured)

    def _capture(self, animal: DemoAnimal, t: float) -> tuple[ScoreDraft, bytes | None]:
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
        self.frames["scored"] += 1
        msg_id = new_msg_id()
        dark = not 7 <= datetime.fromtimestamp(t, UTC).hour < 19
        motion = float(max(0.0, self.rng.normal(2.5 if dark else 1.0, 0.4) * (1 - min(level, 1.6) / 2.2)))
        with_crop = self.frames["scored"] % self.crop_every == 0
        record = ScoreDraft.build(
            msg_id=msg_id,
            device_id=self.device_id,
            site=self.site,
            cage_id=animal.cage_id,
            animal_id=animal.animal_id,
            view=self._view(animal),
            captured_at=_at(t),
            clock={"synced": True, "boot_id": self.boot_id, "monotonic_s": round(time.monotonic(), 3)},
            model=self.bank.model if self.use_model else CURVE_MODEL,
            p_pain=s.p_pain,
            label=s.label,
            amgs=s.p_pain,
            confidence=s.confidence,
            needs_review=s.needs_review,
            au=s.au,
            mgs_au=s.mgs_au,
            quality={
                "sharpness": 120.0,
                "exposure": 110.0,
                "face_px": 299,
                "motion": round(motion, 3),
                "asleep": bool(not dark and motion < 0.5),
            },
            inference_ms=s.inference_ms,
            has_crop=True,  # every face is kept and served on request (crop_reader)
        )
        self.faces[msg_id] = face.jpeg
        if len(self.faces) > 20000:
            self.faces.pop(next(iter(self.faces)))
        return record, face.jpeg if with_crop else None

    def stop(self) -> None:
        """Flush, say offline (retained), disconnect: the device agent's own shutdown."""
        self.delivery.stop()
        self.crops.disconnect()
        self.crops.loop_stop()
        self.outbox.close()
