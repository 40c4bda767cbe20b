"""The alert job the collector runs: evaluate the rules every ``evaluate_every_s``, deliver the outbox
every ``notify.deliver_every_s``. One background thread; a failing pass is logged and retried, never fatal."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlite_utils

from .channels import build_channels
from .config import AlertsConfig, NotifyConfig
from .engine import AlertEngine, Change, wall_clock
from .inputs import cage_snapshots, device_snapshots, window_stats
from .outbox import Deliverer
from .rules import evaluate

log = logging.getLogger(__name__)


def mqtt_params(mqtt_cfg: Any) -> dict[str, Any]:
    """Connection settings for the alert publisher from the collector's ``[mqtt]`` section."""
    return {
        "host": mqtt_cfg.host,
        "port": mqtt_cfg.port,
        "client_id": f"{mqtt_cfg.client_id}-alerts",
        "username": mqtt_cfg.username,
        "password": mqtt_cfg.password(),
        "tls": mqtt_cfg.tls,
    }


class AlertService:
    """Rules -> engine -> outbox -> channels, on a timer. ``db`` gives this thread's connection."""

    def __init__(
        self,
        db: Callable[[], sqlite_utils.Database],
        alerts: AlertsConfig,
        notify: NotifyConfig,
        mqtt: dict[str, Any] | None,
        clock: Callable[[], datetime] = wall_clock,
    ) -> None:
        self.db = db
        self.cfg = alerts
        self.notify = notify
        self.clock = clock
        self.engine = AlertEngine(db, alerts, notify, clock)
        self.channels = build_channels(notify, mqtt)
        self.deliverer = Deliverer(db, notify, self.channels, wall_clock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def evaluate_once(self) -> list[Change]:
        now = self.clock()
        conn = self.db().conn
        devices = device_snapshots(conn, self.cfg, now)
        cages = cage_snapshots(conn, self.cfg, devices, now)
        conditions = evaluate(
            self.cfg,
            now,
            cages,
            devices,
            lambda cage, since, until: window_stats(conn, cage, since, until),
            self.engine.pain_open_since(),
        )
        return self.engine.apply(conditions, now)

    def _loop(self) -> None:
        next_eval = 0.0
        while not self._stop.is_set():
            if self.cfg.enabled and time.monotonic() >= next_eval:
                next_eval = time.monotonic() + self.cfg.evaluate_every_s
                self._guard("evaluating alert rules", self.evaluate_once)
            self._guard("delivering alert notifications", self.deliverer.deliver_due)
            self._stop.wait(min(self.notify.deliver_every_s, self.cfg.evaluate_every_s))

    def _guard(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
            self.last_error = None
        except Exception as e:  # noqa: BLE001 - the job must outlive a bad pass (disk full, locked db)
            self.last_error = f"{what}: {type(e).__name__}: {e}"
            log.exception("alert job failed while %s; retrying next pass", what)

    def start(self) -> AlertService:
        self._thread = threading.Thread(target=self._loop, name="amgs-alerts", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        for channel in self.channels.values():
            close = getattr(channel, "close", None)
            if close:
                close()
