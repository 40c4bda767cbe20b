"""Durable notification outbox: every notification is a row first, and is delivered (with retries) after.

A receiver that is down (SMTP relay rebooting, webhook endpoint 500, broker restarting) only delays
delivery: the row stays, with its attempt count and last error, and is retried with exponential backoff
until it goes through. Messages to one target are delivered in order (the MQTT topic is retained
"current state", so a stale one must never overtake a newer one).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlite_utils

from amgs.contract import alert_topic, format_time
from amgs.sqlite_tx import write_transaction

from .config import SEVERITY_RANK, AlertsConfig, NotifyConfig
from .store import ALERTS, OUTBOX, alert_message

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """A channel could not deliver now; the outbox retries later."""


class Channel(Protocol):
    name: str

    def send(self, target: str, payload: dict[str, Any]) -> None: ...


def _cage_state(db: sqlite_utils.Database, row: dict[str, Any]) -> dict[str, Any]:
    """The cage's current alert state: its most severe unresolved alert, else the alert that just changed."""
    live = list(
        db[ALERTS].rows_where(
            "site = ? and cage_id = ? and state in ('open', 'acknowledged')", [row["site"], row["cage_id"]]
        )
    )
    if not live:
        return row
    return max(live, key=lambda a: (SEVERITY_RANK[a["severity"]], a["state"] == "open", a["updated_at"]))


def enqueue_notifications(
    db: sqlite_utils.Database,
    alerts: AlertsConfig,
    notify: NotifyConfig,
    row: dict[str, Any],
    event: str,
    now: datetime,
) -> int:
    """Queue one row per channel that wants this event; return how many. Runs inside the caller's transaction."""
    stamp = format_time(now)
    queued: list[tuple[str, str, dict[str, Any]]] = []
    if notify.mqtt.enabled:
        state = alert_message(_cage_state(db, row))
        queued.append(("mqtt", alert_topic(row["site"], row["cage_id"]), state))
    wants_people = event in ("opened", "escalated", "renotified") or (
        event == "resolved" and alerts.notify_on_resolve
    )
    message = alert_message(row)
    rank = SEVERITY_RANK[row["severity"]]
    for i, hook in enumerate(notify.webhooks):
        if (wants_people or event == "acknowledged") and rank >= SEVERITY_RANK[hook.min_severity]:
            queued.append((f"webhook:{i}", hook.url, {"event": event, "alert": message}))
    if notify.email and wants_people and rank >= SEVERITY_RANK[notify.email.min_severity]:
        queued.append(("email", ",".join(notify.email.to), {"event": event, "alert": message}))
    for channel, target, payload in queued:
        db[OUTBOX].insert(
            {
                "alert_id": row["alert_id"],
                "channel": channel,
                "target": target,
                "payload": json.dumps(payload, separators=(",", ":")),
                "created_at": stamp,
                "attempts": 0,
                "next_attempt_at": stamp,
            }
        )
    return len(queued)


class Deliverer:
    """Sends due outbox rows through their channels; failures are kept and retried with backoff."""

    def __init__(
        self,
        db: sqlite_utils.Database | Callable[[], sqlite_utils.Database],
        notify: NotifyConfig,
        channels: dict[str, Channel],
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self.notify = notify
        self.channels = channels
        self.clock = clock

    @property
    def db(self) -> sqlite_utils.Database:
        return self._db() if callable(self._db) else self._db

    def backoff(self, attempts: int) -> timedelta:
        seconds = min(self.notify.retry_max_s, self.notify.retry_initial_s * 2 ** max(0, attempts - 1))
        return timedelta(seconds=seconds)

    def pending(self) -> list[dict[str, Any]]:
        return list(self.db[OUTBOX].rows_where("delivered_at is null", order_by="id"))

    def deliver_due(self) -> tuple[int, int]:
        """One pass: (delivered, failed). A failed target is skipped for the rest of the pass, keeping order."""
        now = self.clock()
        stamp = format_time(now)
        due = list(
            self.db[OUTBOX].rows_where(
                "delivered_at is null and next_attempt_at <= ?", [stamp], order_by="id", limit=500
            )
        )
        blocked: set[tuple[str, str]] = set()
        # Rows not yet due also block later rows to the same target (order per target).
        for r in self.db.query(
            f"select distinct channel, target from {OUTBOX} where delivered_at is null and next_attempt_at > ?",
            [stamp],
        ):
            blocked.add((r["channel"], r["target"]))
        delivered = failed = 0
        for row in due:
            key = (row["channel"], row["target"])
            if key in blocked:
                continue
            channel = self.channels.get(row["channel"])
            try:
                if channel is None:
                    raise DeliveryError(f"channel {row['channel']!r} is not configured any more")
                channel.send(row["target"], json.loads(row["payload"]))
            except Exception as e:  # noqa: BLE001 - any failure of a receiver means "retry later"
                attempts = row["attempts"] + 1
                retry_at = now + self.backoff(attempts)
                error = f"{type(e).__name__}: {e}"[:500]
                with write_transaction(self.db):
                    self.db[OUTBOX].update(
                        row["id"],
                        {"attempts": attempts, "next_attempt_at": format_time(retry_at), "last_error": error},
                    )
                log.warning(
                    "alert notification %s via %s failed (attempt %d), retrying at %s: %s",
                    row["id"],
                    row["channel"],
                    attempts,
                    format_time(retry_at),
                    error,
                )
                blocked.add(key)
                failed += 1
                continue
            with write_transaction(self.db):
                self.db[OUTBOX].update(
                    row["id"], {"attempts": row["attempts"] + 1, "delivered_at": format_time(self.clock())}
                )
            delivered += 1
        return delivered, failed
