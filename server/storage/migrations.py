"""Every step of the collector's schema, from an empty file to :data:`SCHEMA_VERSION`.

The version is SQLite's ``PRAGMA user_version``. Each step runs in its own write transaction, after a
backup of the file (``CollectorDB.migrate`` in ``db.py``), and is recorded in the ``meta`` table. A step
is never edited once released: a change of schema is a new step at the end of :data:`MIGRATIONS`.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import sqlite_utils

from .schema import (
    ALERT_INDEXES,
    ALERT_TABLES_DDL,
    AUTH_INDEXES,
    AUTH_TABLES_DDL,
    RATING_DDL,
    REJECT_TABLES,
    ROLLUP_SUMS,
    ROLLUP_SUMS_V2,
    ROLLUP_TABLES,
    V1_DDL,
    add_rejects,
    reject_deltas,
    rollup_ddl,
    rollup_select,
)


def run_script(conn, sql: str) -> None:
    """Run DDL statements one by one inside the caller's transaction (executescript would commit it)."""
    for statement in sql.split(";"):
        if statement.strip():
            conn.execute(statement)


def _v1(db: sqlite_utils.Database) -> None:
    run_script(db.conn, V1_DDL)


def _v2(db: sqlite_utils.Database) -> None:
    """Rollups for fast time courses, backfilled from the scores already stored (the sums of that time:
    ``ROLLUP_SUMS_V2``; version 10 adds the unscorable counts)."""
    for width, table in ROLLUP_TABLES.items():
        run_script(db.conn, rollup_ddl(table, ROLLUP_SUMS_V2))
        cols = ", ".join(("cage_id", "animal_id", "bucket", *ROLLUP_SUMS_V2))
        db.conn.execute(f"INSERT INTO {table} ({cols}) {rollup_select(width, before_outcomes=True)}")


def _v3(db: sqlite_utils.Database) -> None:
    """Sequence epochs: scores received before a device restarted its numbering at 1 are not pending."""
    db.conn.execute("ALTER TABLE devices ADD COLUMN seq_epoch_start REAL NOT NULL DEFAULT 0")


def _v4(db: sqlite_utils.Database) -> None:
    """Clock re-anchoring: scores from an unsynchronized clock get their time from a synchronized record
    of the same boot (wall time - monotonic time); ``clock_corrected`` marks them."""
    run_script(
        db.conn,
        "ALTER TABLE scores ADD COLUMN clock_corrected INTEGER NOT NULL DEFAULT 0;"
        "CREATE INDEX scores_unanchored ON scores (device_id, boot_id) WHERE clock_synced = 0 AND clock_corrected = 0;"
        "CREATE TABLE clock_anchors (device_id TEXT NOT NULL, boot_id TEXT NOT NULL, offset_s REAL NOT NULL, "
        "updated_at REAL NOT NULL, PRIMARY KEY (device_id, boot_id))",
    )


def _v5(db: sqlite_utils.Database) -> None:
    """Reject rollups (time courses no longer parse every status message) and devices.status_t."""
    for table in REJECT_TABLES.values():
        db.conn.execute(
            f"CREATE TABLE {table} (device_id TEXT NOT NULL, bucket INTEGER NOT NULL, reason TEXT NOT NULL, "
            "n INTEGER NOT NULL, PRIMARY KEY (device_id, bucket, reason)) WITHOUT ROWID"
        )
    db.conn.execute("ALTER TABLE devices ADD COLUMN status_t REAL")
    previous: dict[str, dict] = {}
    rows = db.conn.execute(
        "SELECT device_id, t, rejected_json FROM status_log WHERE rejected_json IS NOT NULL ORDER BY device_id, t"
    )
    for device_id, t, text in rows.fetchall():
        try:
            current = json.loads(text)
        except ValueError:
            continue
        if isinstance(current, dict):
            add_rejects(db.conn, device_id, t, reject_deltas(previous.get(device_id), current))
            previous[device_id] = current


def _adopt(db: sqlite_utils.Database, tables: dict[str, str], indexes: tuple[str, ...]) -> None:
    """Create ``tables`` from their DDL; a table that already exists (made by the code that created these
    tables if missing, before they came under migrations) is rebuilt to the same DDL with its rows, so
    an upgraded database and a new one have the same schema."""
    conn = db.conn
    existing = set(db.table_names())
    for name, ddl in tables.items():
        if name not in existing:
            conn.execute(ddl)
            continue
        old = f"_v6_old_{name}"
        conn.execute(f"ALTER TABLE {name} RENAME TO {old}")
        conn.execute(ddl)
        new_cols = [r[1] for r in conn.execute(f"PRAGMA table_info({name})")]
        old_cols = {r[1] for r in conn.execute(f"PRAGMA table_info({old})")}
        cols = ", ".join(c for c in new_cols if c in old_cols)
        conn.execute(f"INSERT INTO {name} ({cols}) SELECT {cols} FROM {old}")
        conn.execute(f"DROP TABLE {old}")  # its indexes go with it
    for index in indexes:
        conn.execute(index)


def _v6(db: sqlite_utils.Database) -> None:
    """The dashboard's accounts and the alert tables, which versions before 6 created at run time if missing."""
    _adopt(db, AUTH_TABLES_DDL, AUTH_INDEXES)
    _adopt(db, ALERT_TABLES_DDL, ALERT_INDEXES)


def _v9(db: sqlite_utils.Database) -> None:
    """The model registry: models, their evaluations, per-device assignments, events, shadow scores."""
    from .model_schema import MODEL_TABLES_DDL

    run_script(db.conn, MODEL_TABLES_DDL)


def _v7(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE scores ADD COLUMN model_synthetic INTEGER")  # NULL: a device older than the flag
    db.execute("CREATE INDEX scores_synthetic ON scores(t) WHERE model_synthetic = 1")


def _v8(db: sqlite_utils.Database) -> None:
    """Blinded human scoring: the rating pool, ratings (with their changes) and rater sessions."""
    run_script(db.conn, RATING_DDL)


def _v10(db: sqlite_utils.Database) -> None:
    """Honest scores (issue 11): what a device made of each image (and the detector score of its box, issue
    13), and unscorable counts in the rollups.

    NULL ``outcome`` = a device older than the field: its label stands, the record is scorable. Every
    score stored so far is scorable, so the rollups' existing sums stay right and their new counts are 0."""
    run_script(
        db.conn,
        "ALTER TABLE scores ADD COLUMN outcome TEXT;"
        "ALTER TABLE scores ADD COLUMN unscorable_reason TEXT;"
        "ALTER TABLE scores ADD COLUMN domain_distance REAL;"
        "ALTER TABLE scores ADD COLUMN det_score REAL;"
        "ALTER TABLE shadow_scores ADD COLUMN outcome_active TEXT;"
        "ALTER TABLE shadow_scores ADD COLUMN outcome TEXT",
    )
    for table in ROLLUP_TABLES.values():
        for column in (c for c in ROLLUP_SUMS if c not in ROLLUP_SUMS_V2):
            db.conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")


Migration = Callable[[sqlite_utils.Database], None]


MIGRATIONS: list[tuple[int, str, Migration]] = [
    (1, "scores, devices, gaps, quarantine, status, crops, study metadata", _v1),
    (2, "rollup_5m and rollup_1h, backfilled", _v2),
    (3, "devices.seq_epoch_start: when a device last restarted its numbering", _v3),
    (4, "clock re-anchoring: scores.clock_corrected, clock_anchors", _v4),
    (5, "rejects_5m and rejects_1h (backfilled from status_log), devices.status_t", _v5),
    (6, "web_users, web_sessions, web_tokens, alerts, alert_events, alert_outbox (existing rows kept)", _v6),
    (7, "scores.model_synthetic: the score came from a model trained on synthetic faces", _v7),
    (8, "rating_items, rating_days, ratings, rating_changes, rater_sessions, rater_queue", _v8),
    (9, "model registry: models, model_evaluations, model_assignments, model_events, shadow_scores", _v9),
    (
        10,
        "scores.outcome, unscorable_reason, domain_distance, det_score; rollup n_unscorable and its reasons; "
        "shadow_scores.outcome_active, outcome",
        _v10,
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
