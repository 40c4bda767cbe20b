"""The alert tables: alerts (one row per alert, current state), their history, and the notification outbox.

The tables are created by the collector's migrations (``amgs.server.storage.schema``); times are stored
as the contract's RFC 3339 UTC strings, which sort correctly as text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlite_utils

from amgs.contract import Alert, format_time
from amgs.server.storage.schema import ALERT_EVENTS, ALERT_OUTBOX, ALERTS
from amgs.server.storage.sql import where

EVENTS, OUTBOX = ALERT_EVENTS, ALERT_OUTBOX
OPEN_STATES = ("open", "acknowledged")


def alert_message(row: dict[str, Any]) -> dict[str, Any]:
    """The ``amgs.alert/1`` message for an alert row (validated: a bad row fails here, not at a receiver)."""
    return Alert.build(
        alert_id=row["alert_id"],
        rule=row["rule"],
        site=row["site"],
        cage_id=row["cage_id"],
        animal_id=row.get("animal_id"),
        device_id=row.get("device_id"),
        severity=row["severity"],
        state=row["state"],
        opened_at=row["opened_at"],
        updated_at=row["updated_at"],
        message=(row.get("message") or "")[:1000],
        value=row.get("value"),
        threshold=row.get("threshold"),
    ).wire()


def add_event(
    db: sqlite_utils.Database, alert_id: str, at: datetime, kind: str, actor: str, detail: str
) -> None:
    db[EVENTS].insert(
        {"alert_id": alert_id, "at": format_time(at), "kind": kind, "actor": actor, "detail": detail[:2000]}
    )


def open_alerts(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return list(db[ALERTS].rows_where("state in ('open', 'acknowledged')", order_by="opened_at"))


def list_alerts(
    db: sqlite_utils.Database,
    state: str | None = None,
    site: str | None = None,
    cage_id: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    sql, params = where({"state": state or None, "site": site or None, "cage_id": cage_id or None})
    return list(db.query(f"SELECT * FROM {ALERTS} {sql} ORDER BY updated_at DESC LIMIT ?", [*params, limit]))


def alert_events(db: sqlite_utils.Database, alert_id: str) -> list[dict[str, Any]]:
    return list(db[EVENTS].rows_where("alert_id = ?", [alert_id], order_by="id"))
