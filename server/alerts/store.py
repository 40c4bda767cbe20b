"""The alert tables: alerts (one row per alert, current state), their history, and the notification outbox.

The tables are created by the collector's migrations (``amgs.server.storage.schema``); times are stored
as the contract's RFC 3339 UTC strings, which sort correctly as text.

Everything here is plain SQL through the connection the collector gives (a ``sqlite3.Connection``, a
sqlite-utils ``Database``, or on PostgreSQL a ``pg.PgConnection``): the same statements on both engines.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from amgs.contract import Alert, format_time
from amgs.server.storage.schema import ALERT_EVENTS, ALERT_OUTBOX, ALERTS
from amgs.server.storage.sql import database, where

EVENTS, OUTBOX = ALERT_EVENTS, ALERT_OUTBOX
OPEN_STATES = ("open", "acknowledged")

Connection = Any
"""What the alert code is given: ``sqlite3.Connection``, sqlite-utils ``Database`` or ``pg.PgConnection``."""


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


def rows(db: Connection, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """The rows of a query as dicts (column name -> value), on either engine."""
    return list(database(db).query(sql, list(params)))


def insert(db: Connection, table: str, row: Mapping[str, Any]) -> None:
    """``INSERT INTO table (...) VALUES (...)`` of one row; table and column names come from code."""
    cols = list(row)
    db.execute(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
        [row[c] for c in cols],
    )


def get_alert(db: Connection, alert_id: str) -> dict[str, Any] | None:
    found = rows(db, f"SELECT * FROM {ALERTS} WHERE alert_id = ?", [alert_id])
    return found[0] if found else None


def update_alert(db: Connection, alert_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Set ``changes`` on one alert and return the whole row as it is now."""
    sets = ", ".join(f"{c} = ?" for c in changes)
    db.execute(f"UPDATE {ALERTS} SET {sets} WHERE alert_id = ?", [*changes.values(), alert_id])
    row = get_alert(db, alert_id)
    if row is None:
        raise LookupError(f"no alert with id {alert_id!r}")
    return row


def add_event(db: Connection, alert_id: str, at: datetime, kind: str, actor: str, detail: str) -> None:
    insert(
        db,
        EVENTS,
        {"alert_id": alert_id, "at": format_time(at), "kind": kind, "actor": actor, "detail": detail[:2000]},
    )


def open_alerts(db: Connection) -> list[dict[str, Any]]:
    return rows(db, f"SELECT * FROM {ALERTS} WHERE state IN ('open', 'acknowledged') ORDER BY opened_at")


def list_alerts(
    db: Connection,
    state: str | None = None,
    site: str | None = None,
    cage_id: str | None = None,
    limit: int = 200,
) -> list[dict[str, Any]]:
    sql, params = where({"state": state or None, "site": site or None, "cage_id": cage_id or None})
    return rows(db, f"SELECT * FROM {ALERTS} {sql} ORDER BY updated_at DESC LIMIT ?", [*params, limit])


def alert_events(db: Connection, alert_id: str) -> list[dict[str, Any]]:
    return rows(db, f"SELECT * FROM {EVENTS} WHERE alert_id = ? ORDER BY id", [alert_id])


WRITER_KEY = "alerts.changed_at"


def serialize_writers(db: Connection, now: datetime) -> None:
    """The first statement of every transaction that changes alerts: it writes one ``meta`` row (when the
    alert engine last changed anything), so such transactions run one after the other on both engines.

    On SQLite ``BEGIN IMMEDIATE`` already serialises writers; on PostgreSQL (READ COMMITTED) the row lock
    this upsert takes makes a second collector worker wait until the first commits, and the second then
    reads the alerts the first opened: two workers evaluating at once open one alert per ``dedupe_key``,
    not two, and a staff action never interleaves with an evaluation.
    """
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [WRITER_KEY, format_time(now)],
    )
