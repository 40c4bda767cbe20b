"""Durable notification outbox: every notification is a row first, and is delivered (with retries) after.

A receiver that is down (SMTP relay rebooting, webhook endpoint 500, broker restarting) only delays
delivery: the row stays, with its attempt count and last error, and is retried with exponential backoff
until it goes through. Messages to one target are delivered in order (the MQTT topic is retained
"current state", so a stale one must never overtake a newer one).

Several collector workers may share one database (PostgreSQL, ``docs/scale-out.md``) and each runs the
delivery job. A row is sent only by the worker that claimed it: the claim is one ``UPDATE`` that moves the
row's ``next_attempt_at`` a lease (:data:`CLAIM_S`) ahead, on the condition that it is still undelivered
and due; the worker whose update changed the row (row count 1) sends it, any other finds it changed and
skips it and, to keep the order, the rest of that target's rows in this pass. The same statement is atomic
on both engines (SQLite: one writer at a time; PostgreSQL: the second update waits for the first to
commit and then re-checks the condition). A worker that dies while sending leaves the row claimed until
the lease ends; then another worker sends it again (at least once, never lost). The claim needs no column
of its own (``claimed_by``): it is carried by ``next_attempt_at``, which already means "not before".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from amgs.contract import alert_topic, format_time
from amgs.sqlite_tx import write_transaction

from .config import SEVERITY_RANK, AlertsConfig, NotifyConfig
from .store import ALERTS, OUTBOX, Connection, alert_message, insert, rows

log = logging.getLogger(__name__)

CLAIM_S = 300.0
"""How long a claimed outbox row is left to the worker sending it (longer than any channel's timeouts)."""


class DeliveryError(Exception):
    """A channel could not deliver now; the outbox retries later."""


class Channel(Protocol):
    name: str

    def send(self, target: str, payload: dict[str, Any]) -> None: ...


def _cage_state(db: Connection, row: dict[str, Any]) -> dict[str, Any]:
    """The cage's current alert state: its most severe unresolved alert, else the alert that just changed."""
    live = rows(
        db,
        f"SELECT * FROM {ALERTS} WHERE site = ? AND cage_id = ? AND state IN ('open', 'acknowledged')",
        [row["site"], row["cage_id"]],
    )
    if not live:
        return row
    return max(live, key=lambda a: (SEVERITY_RANK[a["severity"]], a["state"] == "open", a["updated_at"]))


def enqueue_notifications(
    db: Connection,
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
        insert(
            db,
            OUTBOX,
            {
                "alert_id": row["alert_id"],
                "channel": channel,
                "target": target,
                "payload": json.dumps(payload, separators=(",", ":")),
                "created_at": stamp,
                "attempts": 0,
                "next_attempt_at": stamp,
            },
        )
    return len(queued)


class Deliverer:
    """Sends due outbox rows through their channels; failures are kept and retried with backoff."""

    def __init__(
        self,
        db: Connection | Callable[[], Connection],
        notify: NotifyConfig,
        channels: dict[str, Channel],
        clock: Callable[[], datetime],
    ) -> None:
        self._db = db
        self.notify = notify
        self.channels = channels
        self.clock = clock

    @property
    def db(self) -> Connection:
        return self._db() if callable(self._db) else self._db

    def backoff(self, attempts: int) -> timedelta:
        seconds = min(self.notify.retry_max_s, self.notify.retry_initial_s * 2 ** max(0, attempts - 1))
        return timedelta(seconds=seconds)

    def pending(self) -> list[dict[str, Any]]:
        return rows(self.db, f"SELECT * FROM {OUTBOX} WHERE delivered_at IS NULL ORDER BY id")

    def _claim(self, row: dict[str, Any], now: datetime) -> bool:
        """Take the row for this pass (see the module's docstring); False: another worker has it or sent it."""
        with write_transaction(self.db):
            cur = self.db.execute(
                f"UPDATE {OUTBOX} SET next_attempt_at = ? "
                "WHERE id = ? AND delivered_at IS NULL AND next_attempt_at <= ?",
                [format_time(now + timedelta(seconds=CLAIM_S)), row["id"], format_time(now)],
            )
            return cur.rowcount == 1

    def deliver_due(self) -> tuple[int, int]:
        """One pass: (delivered, failed). A failed target is skipped for the rest of the pass, keeping order."""
        now = self.clock()
        stamp = format_time(now)
        due = rows(
            self.db,
            f"SELECT * FROM {OUTBOX} WHERE delivered_at IS NULL AND next_attempt_at <= ? ORDER BY id LIMIT 500",
            [stamp],
        )
        blocked: set[tuple[str, str]] = set()
        # Rows not yet due (waiting for a retry, or claimed by another worker) block later rows to the
        # same target (order per target).
        for r in rows(
            self.db,
            f"SELECT DISTINCT channel, target FROM {OUTBOX} WHERE delivered_at IS NULL AND next_attempt_at > ?",
            [stamp],
        ):
            blocked.add((r["channel"], r["target"]))
        delivered = failed = 0
        for row in due:
            key = (row["channel"], row["target"])
            if key in blocked:
                continue
            if not self._claim(row, now):
                blocked.add(key)  # another worker sends it (or has): its target's later rows wait for it
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
                    self.db.execute(
                        f"UPDATE {OUTBOX} SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
                        [attempts, format_time(retry_at), error, row["id"]],
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
                self.db.execute(
                    f"UPDATE {OUTBOX} SET attempts = ?, delivered_at = ?, next_attempt_at = ? WHERE id = ?",
                    [row["attempts"] + 1, format_time(self.clock()), row["next_attempt_at"], row["id"]],
                )
            delivered += 1
        return delivered, failed
