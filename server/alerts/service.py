"""The alert work the collector runs as periodic jobs: evaluate the rules (``alerts.evaluate_every_s``) and
deliver the notification outbox (``notify.deliver_every_s``). A failing pass raises; the collector's job
runner logs it and runs it again next time, so alerts never stop the collector."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .agreement import rating_findings
from .channels import build_channels
from .config import AlertsConfig, NotifyConfig
from .engine import AlertEngine, Change, wall_clock
from .inputs import cage_snapshots, device_snapshots, window_stats
from .outbox import Deliverer
from .rules import evaluate
from .store import Connection

log = logging.getLogger(__name__)


def mqtt_params(mqtt_cfg: Any, notify_mqtt: Any) -> dict[str, Any]:
    """Connection settings for the alert publisher: the collector's broker (``[mqtt]``) with the publisher's
    own account (``[notify.mqtt]``) when it has one; its client id is that account's name."""
    from amgs.server.config import read_secret

    if notify_mqtt.username:
        user = notify_mqtt.username
        password = read_secret(notify_mqtt.password_file, "notify.mqtt.password_file")
    else:
        user, password = mqtt_cfg.username, mqtt_cfg.password()
    return {
        "host": mqtt_cfg.host,
        "port": mqtt_cfg.port,
        "client_id": notify_mqtt.username or f"{mqtt_cfg.session_id}-alerts",
        "username": user,
        "password": password,
        "tls": mqtt_cfg.tls,
    }


def evaluate_once(engine: AlertEngine, db: Connection, rating=None) -> list[Change]:
    """Read the snapshots, run the rules, reconcile the alerts (at the engine's clock). ``rating``: the
    collector's ``[rating]`` section, for the model-vs-human agreement rule (None = not judged)."""
    now = engine.clock()
    conn = getattr(db, "conn", db)  # sqlite-utils' Database: its sqlite3 connection; PgConnection: itself
    cfg = engine.cfg
    devices = device_snapshots(conn, cfg, now)
    cages = cage_snapshots(conn, cfg, devices, now)
    findings = evaluate(
        cfg,
        now,
        cages,
        devices,
        lambda cage, since, until: window_stats(conn, cage, since, until),
        engine.pain_open_since(),
    )
    conditions, unknown = list(findings.conditions), set(findings.unknown)
    if rating is not None:
        more, sparse = rating_findings(conn, rating, now.timestamp())
        conditions += more
        unknown |= sparse
    return engine.apply(conditions, now, unknown)


class AlertRunner:
    """Engine + deliverer for one collector. The engine is shared with the dashboard (acknowledge)."""

    def __init__(
        self,
        db: Callable[[], Connection],
        alerts: AlertsConfig,
        notify: NotifyConfig,
        mqtt: dict[str, Any] | None,
        clock: Callable[[], datetime] = wall_clock,
        engine: AlertEngine | None = None,
        rating=None,
    ) -> None:
        self.db = db
        self.rating = rating
        self.engine = engine or AlertEngine(db, alerts, notify, clock)
        self._mqtt = mqtt
        self._notify = notify
        self._lock = threading.Lock()
        self._deliverer: Deliverer | None = None

    @property
    def deliverer(self) -> Deliverer:
        with self._lock:  # channels (an MQTT connection) are made once, on first use
            if self._deliverer is None:
                self._deliverer = Deliverer(
                    self.db, self._notify, build_channels(self._notify, self._mqtt), wall_clock
                )
            return self._deliverer

    def evaluate_once(self) -> list[Change]:
        return evaluate_once(self.engine, self.db(), self.rating)

    def deliver_once(self) -> tuple[int, int]:
        return self.deliverer.deliver_due()

    def close(self) -> None:
        if self._deliverer is not None:
            for channel in self._deliverer.channels.values():
                close = getattr(channel, "close", None)
                if close:
                    close()
