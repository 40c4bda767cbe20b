"""Turns the conditions the rules find into alerts people can act on.

One alert per de-duplication key (rule + site + cage) while it is open or acknowledged. Each evaluation:
a new condition opens an alert and notifies; a held condition updates it, re-notifies an unacknowledged
alert every ``renotify_after_min`` and escalates (re-opening an acknowledged one) when its severity rises;
a condition that stayed clear for ``resolve_after_min`` auto-resolves it. Every notification goes through
the durable outbox (``outbox.py``), so a receiver being down delays it but never loses it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from amgs.contract import format_time, parse_time
from amgs.server.storage.db import require_schema
from amgs.sqlite_tx import write_transaction

from .config import AlertsConfig, NotifyConfig
from .outbox import enqueue_notifications
from .rules import Condition, more_severe
from .store import (
    ALERTS,
    OPEN_STATES,
    Connection,
    add_event,
    get_alert,
    insert,
    open_alerts,
    serialize_writers,
    update_alert,
)

log = logging.getLogger(__name__)


def wall_clock() -> datetime:
    return datetime.now(UTC)


class AlertNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Change:
    kind: str  # opened, updated, escalated, renotified, acknowledged, resolved
    alert: dict[str, Any]


class AlertEngine:
    """Alert state machine over the alert tables. Thread-safe: the HTTP handlers and the periodic job share it.

    ``db``: a connection, or a function giving this thread's connection (``CollectorDB.local`` or
    ``PgDatabase.local``). Every change runs in one ``write_transaction`` that starts with
    :func:`~.store.serialize_writers`, so several collector workers on one PostgreSQL database change the
    alerts one at a time, as the threads of one collector do."""

    def __init__(
        self,
        db: Connection | Callable[[], Connection],
        alerts: AlertsConfig,
        notify: NotifyConfig,
        clock: Callable[[], datetime] = wall_clock,
        outbox_clock: Callable[[], datetime] = wall_clock,
    ) -> None:
        self._db = db
        self.cfg = alerts
        self.notify = notify
        self.clock = clock
        self.outbox_clock = outbox_clock
        self._lock = threading.RLock()
        require_schema(self.db, "the alert engine")

    @property
    def db(self) -> Connection:
        """This thread's connection (the collector gives each thread its own)."""
        return self._db() if callable(self._db) else self._db

    # ------------------------------------------------------------------ evaluation

    def pain_open_since(self) -> dict[str, datetime]:
        return {
            a["dedupe_key"]: parse_time(a["opened_at"])
            for a in open_alerts(self.db)
            if a["rule"] == "sustained_pain"
        }

    def apply(
        self, conditions: Iterable[Condition], now: datetime | None = None, unknown: set[str] | None = None
    ) -> list[Change]:
        """Reconcile the stored alerts with the conditions that hold at ``now``. Alerts whose key is in
        ``unknown`` (too little data to judge) are left as they are."""
        now = now or self.clock()
        stamp = format_time(now)
        active = {c.key: c for c in conditions}
        changes: list[Change] = []
        with self._lock, write_transaction(self.db):
            serialize_writers(self.db, now)
            for alert in open_alerts(self.db):
                cond = active.pop(alert["dedupe_key"], None)
                if cond is None and alert["dedupe_key"] in (unknown or ()):
                    continue
                if cond is None:
                    changes.extend(self._maybe_resolve(alert, now))
                    continue
                update: dict[str, Any] = {
                    "updated_at": stamp,
                    "last_active_at": stamp,
                    "message": cond.message,
                    "value": cond.value,
                    "threshold": cond.threshold,
                }
                kind = "updated"
                last = parse_time(alert["last_notified_at"] or alert["opened_at"])
                if more_severe(cond.severity, alert["severity"]):
                    kind = "escalated"
                    update |= {"severity": cond.severity, "state": "open"}
                elif alert["state"] == "open" and now - last >= timedelta(
                    minutes=self.cfg.renotify_after_min
                ):
                    kind = "renotified"
                if kind != "updated":
                    update |= {"last_notified_at": stamp, "notify_count": (alert["notify_count"] or 0) + 1}
                row = update_alert(self.db, alert["alert_id"], update)
                if kind != "updated":
                    add_event(self.db, row["alert_id"], now, kind, "system", cond.message)
                    self._notify(row, kind)
                    changes.append(Change(kind, row))
            for cond in active.values():
                row = self._open(cond, now)
                changes.append(Change("opened", row))
        for c in changes:
            log.warning(
                "alert %s: %s [%s] %s", c.kind, c.alert["dedupe_key"], c.alert["severity"], c.alert["message"]
            )
        return changes

    def _open(self, cond: Condition, now: datetime) -> dict[str, Any]:
        stamp = format_time(now)
        row = {
            "alert_id": uuid.uuid4().hex,
            "dedupe_key": cond.key,
            "rule": cond.rule,
            "site": cond.site,
            "cage_id": cond.cage_id,
            "animal_id": cond.animal_id,
            "device_id": cond.device_id,
            "severity": cond.severity,
            "state": "open",
            "opened_at": stamp,
            "updated_at": stamp,
            "last_active_at": stamp,
            "last_notified_at": stamp,
            "notify_count": 1,
            "message": cond.message,
            "value": cond.value,
            "threshold": cond.threshold,
        }
        insert(self.db, ALERTS, row)
        add_event(self.db, row["alert_id"], now, "opened", "system", cond.message)
        self._notify(row, "opened")
        return row

    def _maybe_resolve(self, alert: dict[str, Any], now: datetime) -> list[Change]:
        if not self.cfg.auto_resolve:
            return []
        clear_since = parse_time(alert["last_active_at"] or alert["updated_at"])
        if now - clear_since < timedelta(minutes=self.cfg.resolve_after_min):
            return []
        row = self._set_resolved(alert, now, "system", "condition cleared")
        return [Change("resolved", row)]

    def _set_resolved(self, alert: dict[str, Any], now: datetime, actor: str, comment: str) -> dict[str, Any]:
        stamp = format_time(now)
        row = update_alert(
            self.db,
            alert["alert_id"],
            {
                "state": "resolved",
                "updated_at": stamp,
                "resolved_at": stamp,
                "resolved_by": actor,
                "resolve_comment": comment,
            },
        )
        add_event(self.db, row["alert_id"], now, "resolved", actor, comment)
        self._notify(row, "resolved")
        return row

    # ------------------------------------------------------------------ staff actions

    def get(self, alert_id: str) -> dict[str, Any]:
        row = get_alert(self.db, alert_id)
        if row is None:
            raise AlertNotFound(f"no alert with id {alert_id!r}")
        return row

    def acknowledge(self, alert_id: str, actor: str, comment: str = "") -> dict[str, Any]:
        """Stop re-notification; the alert stays visible until its condition clears (or someone resolves it)."""
        now = self.clock()
        with self._lock, write_transaction(self.db):
            serialize_writers(self.db, now)
            alert = self.get(alert_id)
            if alert["state"] != "open":
                raise ValueError(
                    f"alert {alert_id} is {alert['state']}, only an open alert can be acknowledged"
                )
            stamp = format_time(now)
            row = update_alert(
                self.db,
                alert_id,
                {
                    "state": "acknowledged",
                    "updated_at": stamp,
                    "acknowledged_at": stamp,
                    "acknowledged_by": actor,
                    "ack_comment": comment[:2000],
                },
            )
            add_event(self.db, alert_id, now, "acknowledged", actor, comment)
            self._notify(row, "acknowledged")
        return row

    def resolve(self, alert_id: str, actor: str, comment: str = "") -> dict[str, Any]:
        """Close an alert by hand (e.g. animal treated or removed). If the condition still holds it reopens."""
        now = self.clock()
        with self._lock, write_transaction(self.db):
            serialize_writers(self.db, now)
            alert = self.get(alert_id)
            if alert["state"] not in OPEN_STATES:
                raise ValueError(f"alert {alert_id} is already {alert['state']}")
            return self._set_resolved(alert, now, actor, comment[:2000])

    def _notify(self, row: dict[str, Any], event: str) -> None:
        enqueue_notifications(self.db, self.cfg, self.notify, row, event, self.outbox_clock())
