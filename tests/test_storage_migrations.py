"""Every table under the collector's migrations: the dashboard's accounts and the alert tables, which were
created-if-missing by their own code until schema version 6, are adopted with their rows (backup first);
a new database gets the same schema; code handed an un-migrated database says what to do."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
import sqlite_utils

from amgs.server.alerts.config import AlertsConfig, NotifyConfig
from amgs.server.alerts.engine import AlertEngine
from amgs.server.alerts.outbox import Deliverer
from amgs.server.alerts.rules import Condition
from amgs.server.alerts.store import alert_events
from amgs.server.config import parse_config
from amgs.server.storage.db import SCHEMA_VERSION, CollectorDB, DatabaseError, open_database, require_schema
from amgs.server.storage.schema import ALERT_EVENTS, ALERT_OUTBOX, ALERTS, SESSIONS, TOKENS, USERS
from amgs.server.web import auth

TABLES = (USERS, SESSIONS, TOKENS, ALERTS, ALERT_EVENTS, ALERT_OUTBOX)
OPENED = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
PAIN = Condition("sustained_pain", "lab1", "C01", "alert", "sustained pain in cage C01", 0.6, 0.5, "M1", "d1")


def legacy_create_tables(db: sqlite_utils.Database) -> None:
    """How the login and alert tables were made before schema version 6 (server/web/auth.py
    ``create_auth_tables`` and server/alerts/store.py ``create_alert_tables``, verbatim): created if
    missing, at run time, beside the migrated tables."""
    names = db.table_names()
    if "web_users" not in names:
        db["web_users"].create(
            {"username": str, "password_hash": str, "role": str, "created_at": float, "disabled": int},
            pk="username",
            not_null={"password_hash", "role"},
        )
    if "web_sessions" not in names:
        db["web_sessions"].create(
            {"token_sha256": str, "username": str, "csrf": str, "created_at": float, "expires_at": float},
            pk="token_sha256",
        )
    if "web_tokens" not in names:
        db["web_tokens"].create(
            {"token_sha256": str, "name": str, "username": str, "created_at": float, "last_used_at": float},
            pk="token_sha256",
        )
    if "alerts" not in db.table_names():
        db["alerts"].create(
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
        db["alerts"].create_index(["state", "dedupe_key"], if_not_exists=True)
        db["alerts"].create_index(["site", "cage_id", "state"], if_not_exists=True)
        db["alerts"].create_index(["opened_at"], if_not_exists=True)
    if "alert_events" not in db.table_names():
        db["alert_events"].create(
            {"id": int, "alert_id": str, "at": str, "kind": str, "actor": str, "detail": str},
            pk="id",
            foreign_keys=[("alert_id", "alerts", "alert_id")],
        )
        db["alert_events"].create_index(["alert_id", "id"], if_not_exists=True)
    if "alert_outbox" not in db.table_names():
        db["alert_outbox"].create(
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
        db["alert_outbox"].create_index(["delivered_at", "next_attempt_at"], if_not_exists=True)


def _alert(alert_id: str, state: str, **extra) -> dict:
    stamp = OPENED.isoformat().replace("+00:00", "Z")
    return {
        "alert_id": alert_id,
        "dedupe_key": f"sustained_pain:lab1:{alert_id[-3:]}",
        "rule": "sustained_pain",
        "site": "lab1",
        "cage_id": alert_id[-3:],
        "animal_id": "M1",
        "device_id": "d1",
        "severity": "alert",
        "state": state,
        "opened_at": stamp,
        "updated_at": stamp,
        "last_active_at": stamp,
        "last_notified_at": stamp,
        "notify_count": 1,
        "message": "sustained pain",
        "value": 0.61,
        "threshold": 0.5,
        **extra,
    }


def build_version_5_with_legacy_tables(config) -> dict[str, list[dict]]:
    """Today's database before this change: schema version 5 plus the six tables made the old way, with
    rows in every one of them. Returns every row of the six tables."""
    CollectorDB(config.storage.db_path).migrate(target=5)
    db = sqlite_utils.Database(config.storage.db_path)
    legacy_create_tables(db)
    auth.add_user(db, "vet", "correct horse battery", role="staff")
    auth.add_user(db, "guest", "viewer password 1", role="viewer")
    db["web_users"].update("guest", {"disabled": 1})
    auth.create_session(db, "vet", hours=8)
    auth.create_token(db, "vet", "export script")
    db["alerts"].insert(_alert("a-C01", "open", dedupe_key="sustained_pain:lab1:C01"))
    db["alerts"].insert(
        _alert(
            "a-C02", "resolved", resolved_by="vet", resolved_at="2026-05-01T09:00:00Z", resolve_comment="ok"
        )
    )
    db["alert_events"].insert_all(
        [
            {
                "alert_id": "a-C01",
                "at": "2026-05-01T08:00:00Z",
                "kind": "opened",
                "actor": "system",
                "detail": "x",
            },
            {
                "alert_id": "a-C02",
                "at": "2026-05-01T08:00:00Z",
                "kind": "opened",
                "actor": "system",
                "detail": "y",
            },
            {
                "alert_id": "a-C02",
                "at": "2026-05-01T09:00:00Z",
                "kind": "resolved",
                "actor": "vet",
                "detail": "ok",
            },
        ]
    )
    db["alert_outbox"].insert_all(
        [
            {
                "alert_id": "a-C01",
                "channel": "webhook:0",
                "target": "http://127.0.0.1:9/hook",
                "payload": '{"event":"opened"}',
                "created_at": "2026-05-01T08:00:00Z",
                "attempts": 3,
                "next_attempt_at": "2026-05-01T08:05:00Z",
                "last_error": "ConnectionRefusedError: refused",
            },
            {
                "alert_id": "a-C02",
                "channel": "email",
                "target": "vet@example.org",
                "payload": '{"event":"opened"}',
                "created_at": "2026-05-01T08:00:00Z",
                "attempts": 1,
                "next_attempt_at": "2026-05-01T08:00:00Z",
                "delivered_at": "2026-05-01T08:00:01Z",
            },
        ]
    )
    rows = dump(db)
    db.close()
    assert all(rows[t] for t in TABLES)
    return rows


def dump(db: sqlite_utils.Database) -> dict[str, list[dict]]:
    return {t: list(db.query(f"SELECT * FROM {t} ORDER BY rowid")) for t in TABLES}


def schema_of(path) -> list[tuple[str, str, str]]:
    """The six tables' DDL and their indexes, as SQLite stores it."""
    with sqlite3.connect(path) as conn:
        return conn.execute(
            f"SELECT type, name, sql FROM sqlite_master WHERE tbl_name IN ({', '.join('?' * len(TABLES))}) "
            "AND sql IS NOT NULL ORDER BY type, name",
            TABLES,
        ).fetchall()


def _config(tmp_path, name: str):
    return parse_config(
        {"storage": {"state_dir": str(tmp_path / name)}, "notify": {"mqtt": {"enabled": False}}}
    )


def test_upgrade_from_version_5_keeps_accounts_sessions_tokens_and_alerts(tmp_path):
    config = _config(tmp_path, "old")
    before = build_version_5_with_legacy_tables(config)

    db = open_database(config)  # what `amgs server run` and `amgs server migrate` do
    assert db.version() == SCHEMA_VERSION >= 6

    # Backup first: the copy taken before the step holds the old tables and their rows.
    (copy,) = config.storage.backups_dir.glob("collector-*-from-v5.db")
    with sqlite3.connect(copy) as old:
        assert old.execute("PRAGMA user_version").fetchone()[0] == 5
        assert old.execute("SELECT count(*) FROM alert_outbox").fetchone()[0] == 2

    # Nothing lost, nothing changed: every row of every table, every column.
    udb = db.local()
    assert dump(udb) == before
    # The same schema as a database made new by this version.
    fresh = _config(tmp_path, "new")
    open_database(fresh)
    assert schema_of(config.storage.db_path) == schema_of(fresh.storage.db_path)
    assert "migration.6" in {r["key"] for r in udb.query("SELECT key FROM meta")}

    # ... and the rows still work: log-ins, tokens, the open alert de-duplicates, the outbox retries.
    assert auth.check_password(udb, "vet", "correct horse battery")["role"] == "staff"
    assert auth.check_password(udb, "guest", "viewer password 1") is None  # stayed disabled
    assert udb.execute(f"SELECT count(*) FROM {SESSIONS} WHERE username = 'vet'").fetchone()[0] == 1
    clock = lambda: OPENED + timedelta(minutes=5)  # noqa: E731
    notify = NotifyConfig(mqtt={"enabled": False}, webhooks=[{"url": "http://127.0.0.1:9/hook"}])
    engine = AlertEngine(db.local, AlertsConfig(renotify_after_min=60), notify, clock, clock)
    assert engine.apply([PAIN]) == []  # held condition of the adopted open alert: no second alert
    assert udb[ALERTS].count == 2
    assert [r["id"] for r in Deliverer(db.local, notify, {}, clock).pending()] == [1]
    assert engine.acknowledge("a-C01", "vet", "seen")["acknowledged_by"] == "vet"
    events = alert_events(udb, "a-C01")
    assert events[0]["detail"] == "x" and all(e["id"] > 3 for e in events[1:])  # ids carry on


def test_new_database_has_every_table_under_migrations(tmp_path):
    config = _config(tmp_path, "state")
    db = open_database(config)
    assert db.version() == SCHEMA_VERSION
    assert set(TABLES) <= set(db.local().table_names())
    assert not list(config.storage.backups_dir.glob("*.db"))  # nothing to back up in a new file
    require_schema(db.local())  # passes
    assert open_database(config).migrate() == []  # idempotent


def test_unmigrated_database_is_refused_with_advice(tmp_path):
    path = tmp_path / "collector.db"
    CollectorDB(path).migrate(target=5)
    db = sqlite_utils.Database(path)
    with pytest.raises(
        DatabaseError,
        match=rf"schema version 5, the alert engine needs {SCHEMA_VERSION}: run `amgs server migrate`",
    ):
        AlertEngine(db, AlertsConfig(), NotifyConfig(mqtt={"enabled": False}))
    with pytest.raises(DatabaseError, match="schema version 0"):
        require_schema(sqlite_utils.Database(tmp_path / "empty.db"), "the dashboard")
    assert USERS not in db.table_names()  # nothing created behind the migrations' back
