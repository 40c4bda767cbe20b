"""The alert tables: alerts (one row per alert, current state), their history, and the notification outbox.

Times are stored as the contract's RFC 3339 UTC strings, which sort correctly as text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlite_utils

from amgs.contract import Alert, format_time

ALERTS = "alerts"
EVENTS = "alert_events"
OUTBOX = "alert_outbox"
OPEN_STATES = ("open", "acknowledged")


@contextlib.contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: take the write lock up front, so a read-then-write never fails with
    "database is locked" when the ingest writer committed in between (WAL snapshot upgrade)."""
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")


def create_alert_tables(db: sqlite_utils.Database) -> None:
    """Create the alert tables and indexes if missing (idempotent; also run as a collector migration)."""
    if ALERTS not in db.table_names():
        db[ALERTS].create(
            {
                "alert_id": str,
                "dedupe_key": str,
                "rule": str,
                "site": str,
                "cage_id": str,
                "animal_id": str,
                "device_id": str,
                "severity": str,
                "state": str,
                "opened_at": str,
                "updated_at": str,
                "last_active_at": str,
                "last_notified_at": str,
                "notify_count": int,
                "message": str,
                "value": float,
                "threshold": float,
                "acknowledged_by": str,
                "acknowledged_at": str,
                "ack_comment": str,
                "resolved_by": str,
                "resolved_at": str,
                "resolve_comment": str,
            },
            pk="alert_id",
            not_null={"dedupe_key", "rule", "site", "cage_id", "severity", "state", "opened_at"},
        )
        db[ALERTS].create_index(["state", "dedupe_key"], if_not_exists=True)
        db[ALERTS].create_index(["site", "cage_id", "state"], if_not_exists=True)
        db[ALERTS].create_index(["opened_at"], if_not_exists=True)
    if EVENTS not in db.table_names():
        db[EVENTS].create(
            {"id": int, "alert_id": str, "at": str, "kind": str, "actor": str, "detail": str},
            pk="id",
            foreign_keys=[("alert_id", ALERTS, "alert_id")],
        )
        db[EVENTS].create_index(["alert_id", "id"], if_not_exists=True)
    if OUTBOX not in db.table_names():
        db[OUTBOX].create(
            {
                "id": int,
                "alert_id": str,
                "channel": str,
                "target": str,
                "payload": str,
                "created_at": str,
                "attempts": int,
                "next_attempt_at": str,
                "delivered_at": str,
                "last_error": str,
            },
            pk="id",
        )
        db[OUTBOX].create_index(["delivered_at", "next_attempt_at"], if_not_exists=True)


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
    where, args = [], []
    if state:
        where.append("state = ?")
        args.append(state)
    if site:
        where.append("site = ?")
        args.append(site)
    if cage_id:
        where.append("cage_id = ?")
        args.append(cage_id)
    return list(
        db[ALERTS].rows_where(" and ".join(where) or None, args, order_by="updated_at desc", limit=limit)
    )


def alert_events(db: sqlite_utils.Database, alert_id: str) -> list[dict[str, Any]]:
    return list(db[EVENTS].rows_where("alert_id = ?", [alert_id], order_by="id"))
