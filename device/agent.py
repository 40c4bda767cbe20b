"""The cage-side agent's main loop: capture bursts, select a frame per view, score, commit, deliver.

    for each source whose burst is due:  read a burst of frames (replays skip to the next burst time)
        for each view on that source:    crop + quality gate + least-motion frame + stillness
                                         -> score (amgs.preprocess + amgs.scoring) -> record
        commit the records and the replay cursor in one outbox transaction, keep face crops
    the delivery thread publishes the outbox; status, watchdog pings and crop pruning run from here

SIGTERM (or SIGINT) finishes the current burst, flushes what the broker will take within
``delivery.flush_timeout_s``, publishes status "offline" and exits 0.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from amgs.contract import ScoreDraft, Status, format_time, new_msg_id
from amgs.device.config import DeviceConfig
from amgs.device.crops import CropStore
from amgs.device.delivery import Delivery
from amgs.device.health import ClockInfo, Health, status_message
from amgs.device.outbox import Outbox
from amgs.device.selection import Selection, ViewSelector
from amgs.device.sources import (
    BadFrame,
    Frame,
    RetryingSource,
    SourceError,
    SourceExhausted,
    SourceIdle,
    make_source,
)
from amgs.manifest import Manifest
from amgs.scoring import ImageScore, Scorer
from amgs.sdnotify import Notifier

log = logging.getLogger(__name__)
OUTBOX_FILE = "outbox.sqlite3"
HOUSEKEEPING_S = 30.0
DROP_WARNING_S = 24 * 3600.0
"""The status says "OUTBOX FULL" for a day after the outbox cap last dropped scores."""


class AgentError(RuntimeError):
    """The agent cannot start (model, detector, state directory); the message says what to fix."""


def refuse_unvalidated_model(manifest: Manifest, cfg: DeviceConfig) -> None:
    """Never score real cages with a synthetic-trained model unless the config says so explicitly.

    The shipped model has never seen a mouse: its pain alerts would be noise that staff learn to
    ignore, or a sick animal read as fine. It is for demos and tests (``model.allow_synthetic = true``).
    """
    if manifest.synthetic and not cfg.model.allow_synthetic:
        raise AgentError(
            f"model {manifest.name} {manifest.version} was trained on SYNTHETIC faces only "
            f"({manifest.training_data}); it has never seen a real mouse and its pain calls mean nothing "
            "for your animals. Set model.path to a model trained on your lab's scored images (docs/models.md: "
            "'The lab's own model'), or, for a demo or a test, set model.allow_synthetic = true."
        )


def load_scorer(cfg: DeviceConfig, path=None) -> Scorer:
    from amgs.manifest import ManifestError
    from amgs.models import DEFAULT_MODEL
    from amgs.runtime import Model, RuntimeUnavailable

    m = cfg.model
    try:
        model = Model(
            path or m.path or DEFAULT_MODEL,
            num_threads=m.threads,
            accelerator=m.accelerator,
            backend=m.backend,
        )
    except (ManifestError, RuntimeUnavailable) as e:
        raise AgentError(f"model: {e}") from None
    return Scorer(model)


class Agent:
    def __init__(self, cfg: DeviceConfig, scorer: Scorer | None = None) -> None:
        self.cfg = cfg
        self.scorer = scorer or load_scorer(cfg)
        refuse_unvalidated_model(self.scorer.manifest, cfg)  # before anything is written
        self.state_dir = cfg.state_path()
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.outbox = Outbox(self.state_dir / OUTBOX_FILE, cfg.storage.outbox_max_records)
            self.crops = CropStore(self.state_dir / "crops", cfg.storage)
        except (OSError, sqlite3.Error) as e:
            raise AgentError(f"state directory {self.state_dir}: {e}") from None
        self.health = Health()
        self.clock = ClockInfo()
        self.notifier = Notifier()
        self.stop_requested = threading.Event()
        manifest = self.scorer.manifest
        self.model_ref = {
            "name": manifest.name,
            "version": manifest.version,
            "sha256": manifest.sha256,
            "synthetic": manifest.synthetic,
        }
        detector = None
        if cfg.detector is not None:
            from amgs.device.detector import DetectorError, load_detector

            try:
                detector = load_detector(cfg.detector, cfg.model.backend)
            except DetectorError as e:
                raise AgentError(f"detector: {e}") from None
        self._detector = detector
        self._configured = self.scorer
        from amgs.device.model_update import ModelUpdater

        self.models = ModelUpdater(
            cfg, self.state_dir, lambda p: load_scorer(cfg, p), lambda m: refuse_unvalidated_model(m, cfg)
        )
        self.sources = {s.name: RetryingSource(s.name, make_source(s, self.sleep)) for s in cfg.sources}
        for name, src in self.sources.items():
            src.seek(self.outbox.cursor(name))
        self.selectors = {
            v.name: ViewSelector(v, cfg.selection, self.scorer.model.input_size, detector) for v in cfg.views
        }
        self.next_live_burst = dict.fromkeys(self.sources, 0.0)
        self.next_replay_time: dict[str, datetime | None] = dict.fromkeys(self.sources)
        self._seq_cache = self.outbox.last_seq()
        self._dropped = self.outbox.dropped()
        self._dropped_at: float | None = None  # when the outbox cap last dropped scores
        self._last_warning: tuple[str | None, int] = (None, self._dropped)
        self.delivery = Delivery(
            cfg,
            self.state_dir / OUTBOX_FILE,
            self.status,
            self.crops.read,
            model_assign=self.models.assign if cfg.model_update.collector_url else None,
        )
        self._last_housekeeping = 0.0
        self.models.restore(self)

    # ------------------------------------------------------------------ models

    def configured_scorer(self) -> Scorer:
        return self._configured

    def use_scorer(self, scorer: Scorer) -> None:
        """Switch models (called between bursts only): later records carry the new model."""
        old_size = self.scorer.model.input_size
        self.scorer = scorer
        m = scorer.manifest
        self.model_ref = {"name": m.name, "version": m.version, "sha256": m.sha256, "synthetic": m.synthetic}
        if scorer.model.input_size != old_size:
            self.selectors = {
                v.name: ViewSelector(v, self.cfg.selection, scorer.model.input_size, self._detector)
                for v in self.cfg.views
            }

    # ------------------------------------------------------------------ status

    def status(self, state: str) -> dict[str, Any]:
        views = []
        for v in self.cfg.views:
            src = self.sources[v.source]
            views.append(
                {
                    "view": v.name,
                    "cage_id": v.cage_id,
                    "animal_id": v.animal_id,
                    "source_ok": src.ok,
                    "error": src.error[:500] if src.error else None,
                }
            )
        warning = self.crops.warning
        if self._dropped_at is not None and time.monotonic() - self._dropped_at < DROP_WARNING_S:
            warning = f"OUTBOX FULL: {self._dropped} undelivered score(s) dropped (outbox_max_records)" + (
                f"; {warning}" if warning else ""
            )
        delivery = getattr(self, "delivery", None)  # None while Delivery() builds its last will
        message = status_message(
            device_id=self.cfg.device.id,
            site=self.cfg.device.site,
            state=state,
            health=self.health,
            delivery_stats=delivery.stats if delivery else {},
            last_seq=self._seq_cache,
            model=self.model_ref,
            clock=self.clock.record(time.monotonic()),
            views=views,
            storage_warning=warning,
            state_dir=self.state_dir,
        )
        models = getattr(self, "models", None)
        if models is not None:  # previous and candidate model, and how the last model change went
            message = Status.check({**message, **models.status_fields()}).wire()
        return message

    # ------------------------------------------------------------------ waiting

    def sleep(self, seconds: float) -> None:
        """Sleep in short steps, pinging the watchdog; returns early when a stop is requested."""
        deadline = time.monotonic() + seconds
        while not self.stop_requested.is_set():
            self.notifier.watchdog()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.stop_requested.wait(min(left, 0.5))

    # ------------------------------------------------------------------ one burst

    def capture_burst(self, name: str) -> list[Frame]:
        src = self.sources[name]
        sched = self.cfg.schedule
        frames: list[Frame] = []
        not_before = None if src.live else self.next_replay_time[name]
        for i in range(sched.burst_frames):
            try:
                frame = src.read(not_before if i == 0 else None)
            except BadFrame as e:
                self.health.count("seen")
                self.health.reject({"unreadable": 1})
                log.warning("skipped an unreadable frame: %s", e)
                continue
            except (SourceExhausted, SourceIdle):
                break
            except SourceError as e:
                self.health.error(f"source {name}: {e}")
                break
            self.health.count("seen")
            self.health.captured(frame.captured_at)
            frames.append(frame)
            if src.live and i < sched.burst_frames - 1 and sched.frame_gap_s > 0:
                self.sleep(sched.frame_gap_s)
        if frames and not src.live:
            self.next_replay_time[name] = frames[0].captured_at + timedelta(seconds=sched.interval_s)
        return frames

    def score_selection(self, sel: Selection) -> ScoreDraft:
        c = sel.chosen
        s = self._score_active(c.pixels)
        self.health.inference_ms = s.inference_ms
        if not s.scorable:  # published all the same: "the camera sees no usable mouse" must be visible
            self.health.count(f"unscorable_{s.unscorable_reason}")
        shadow = self._shadow(c.pixels)
        msg_id = new_msg_id()
        has_crop = self.crops.save(msg_id, c.pixels)
        v = sel.view
        return ScoreDraft.build(
            msg_id=msg_id,
            device_id=self.cfg.device.id,
            site=self.cfg.device.site,
            cage_id=v.cage_id,
            animal_id=v.animal_id,
            view=v.name,
            captured_at=format_time(c.frame.captured_at),
            clock=self.clock.record(c.frame.monotonic_s),
            model=self.model_ref,
            p_pain=s.p_pain,
            label=s.label,
            amgs=s.amgs,
            confidence=s.confidence,
            needs_review=s.needs_review,
            **s.outcome_fields(),
            **({"domain_distance": s.domain_distance} if s.domain_distance is not None else {}),
            au=s.au,
            mgs_au=s.mgs_au,
            quality={
                "sharpness": round(c.sharpness, 2),
                "exposure": round(c.exposure, 2),
                "face_px": int(c.face_px),
                "motion": round(sel.motion_energy, 3),
                "asleep": sel.asleep,
                **({"det_score": round(c.det_score, 4)} if c.det_score is not None else {}),
            },
            face_box=[int(v) for v in c.box],
            inference_ms=s.inference_ms,
            has_crop=has_crop,
            **({"shadow": shadow} if shadow else {}),
        )

    def _score_active(self, pixels: Any) -> ImageScore:
        """The active model's score (quality gate and in-domain check included: an image the model must not
        be believed on comes back ``unscorable``); a model that fails here is rolled back and the face scored
        again."""
        try:
            return self.scorer.score_pixels(pixels)
        except Exception as e:
            if not self.models.on_scoring_error(self, e):
                raise
        spec = self.scorer.manifest.input
        return self.scorer.score_pixels(_fit(pixels, spec.width, spec.height))

    def _shadow(self, pixels: Any) -> dict[str, Any] | None:
        """The candidate model's score of the same face (never drives anything on the collector)."""
        cand = self.models.candidate
        if cand is None:
            return None
        spec = cand.manifest.input
        try:
            s = cand.score_pixels(_fit(pixels, spec.width, spec.height))  # its own in-domain check too
        except Exception as e:  # noqa: BLE001 - a failing candidate never costs an active score
            log.error("candidate model failed: %s", e)
            self.health.error(f"candidate model failed: {e}")
            return None
        return {
            "model": self.models.candidate_ref,
            "p_pain": s.p_pain,
            "label": s.label,
            "confidence": s.confidence,
            "mgs_au": s.mgs_au,
            "inference_ms": s.inference_ms,
            **s.outcome_fields(),
        }

    def run_burst(self, name: str) -> int:
        """Capture, select, score and commit one burst of one source; returns the records committed."""
        frames = self.capture_burst(name)
        src = self.sources[name]
        records = []
        if frames:
            self.health.count("bursts")
            for view in self.cfg.views:
                if view.source != name:
                    continue
                outcome = self.selectors[view.name].select(frames)
                self.health.reject(outcome.rejected)
                if outcome.selection is not None:
                    records.append(self.score_selection(outcome.selection))
        cursors = {name: src.position} if src.position is not None else {}
        if not records and not cursors:
            return 0
        try:
            seqs = self.outbox.commit(records, cursors)
        except sqlite3.Error as e:
            # Disk full or a broken file: the burst is lost but the agent keeps going and says so.
            self.health.reject({"outbox_write_failed": len(records)})
            self.health.error(f"OUTBOX WRITE FAILED ({e}): {len(records)} score(s) lost")
            log.error("could not commit %d score(s) to the outbox: %s", len(records), e)
            self.delivery.request_status()
            return 0
        dropped = self.outbox.dropped()
        if dropped > self._dropped:
            self._dropped, self._dropped_at = dropped, time.monotonic()
        warning = (self.crops.warning, self._dropped)
        if warning != self._last_warning:  # say it loudly: publish status now, not at the next interval
            self._last_warning = warning
            self.delivery.request_status()
        if seqs:
            self._seq_cache = seqs[-1]
            self.health.count("scored", len(seqs))
            self.delivery.wake()
        return len(seqs)

    # ------------------------------------------------------------------ the loop

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, _frame):
            log.warning(
                "received %s: finishing the current burst, then stopping", signal.Signals(signum).name
            )
            self.stop_requested.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _housekeeping(self) -> None:
        self.notifier.watchdog()
        now = time.monotonic()
        if now - self._last_housekeeping >= HOUSEKEEPING_S:
            self._last_housekeeping = now
            self.crops.prune()
            self.notifier.status(
                f"queue {self.delivery.stats['queue_depth']}, scored {self.health.frames.get('scored', 0)}"
            )

    def _all_exhausted(self) -> bool:
        return all(s.exhausted for s in self.sources.values())

    def run(self) -> int:
        """Run until SIGTERM (or, with exit_when_done, until every replay is scored and delivered)."""
        self._install_signals()
        self.crops.prune()
        self.delivery.start()
        self.models.start()
        self.notifier.ready(f"scoring {len(self.cfg.views)} view(s)")
        log.info(
            "device %s running: %d source(s), %d view(s)",
            self.cfg.device.id,
            len(self.sources),
            len(self.selectors),
        )
        code = 0
        while not self.stop_requested.is_set():
            now = time.monotonic()
            worked = False
            for name, src in self.sources.items():
                if self.stop_requested.is_set():
                    break
                if src.live and now < self.next_live_burst[name]:
                    continue
                if not src.ready():
                    continue
                if src.live:
                    self.next_live_burst[name] = now + self.cfg.schedule.interval_s
                self.run_burst(name)
                worked = worked or not src.idle_until > time.monotonic()
            self._housekeeping()
            self.models.apply(self)  # between bursts: a new model or candidate takes over here
            if not self.delivery.alive():
                log.error(
                    "the delivery thread stopped: %s; exiting for a restart",
                    self.delivery.stats["last_error"],
                )
                code = 1
                break
            if self.cfg.agent.exit_when_done and self._all_exhausted():
                self._wait_delivered()
                break
            if not worked:
                self.sleep(self._idle_wait())
        self.notifier.stopping()
        self.models.close()
        self.delivery.stop()
        self.outbox.close()
        self.notifier.close()
        log.info("device %s stopped", self.cfg.device.id)
        return code

    def _idle_wait(self) -> float:
        """Until the next live burst or source retry is due (at most 0.5 s, so signals are seen quickly)."""
        now = time.monotonic()
        dues = [
            max(self.next_live_burst[n] if s.is_open else s.retry_at, s.idle_until) - now
            for n, s in self.sources.items()
            if not s.exhausted
        ]
        return max(0.01, min([0.5, *dues]))

    def _wait_delivered(self) -> None:
        deadline = time.monotonic() + self.cfg.agent.done_timeout_s
        while not self.stop_requested.is_set() and time.monotonic() < deadline:
            if self.outbox.count() == 0:
                return
            self.sleep(0.1)
        left = self.outbox.count()
        if left:
            log.warning("replay done; %d score(s) still wait for confirmation and stay in the outbox", left)


def _fit(pixels: Any, width: int, height: int) -> Any:
    """A face crop at another model's input size (bilinear), for a candidate or after a roll-back."""
    if (width, height) == pixels.shape[1::-1]:
        return pixels
    import numpy as np
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.BILINEAR))


def run_agent(cfg: DeviceConfig) -> int:
    return Agent(cfg).run()
