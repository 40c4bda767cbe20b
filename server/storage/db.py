"""The collector's SQLite database: schema, versioned migrations (with a backup first), connections.

One file (``storage.state_dir/collector.db``) in WAL mode, opened through sqlite-utils. The schema
version is SQLite's ``PRAGMA user_version``; :data:`MIGRATIONS` lists every step from an empty file,
and an existing database is copied to ``backups/`` before any step runs on it. ``datasette
collector.db`` opens the file read-only for ad-hoc queries (see docs/server.md).

Tables (one line each; times ending in ``_t``/``t``/``_at`` REAL are Unix seconds UTC, text ``*_at``
fields are the contract's RFC 3339 strings):

- ``scores``            one row per stored score record (``msg_id`` primary key = idempotency key)
- ``devices``           one row per device: status / last will, counters, committed watermark
- ``seq_gaps``          ranges of per-device sequence numbers found missing (open, filled or lost)
- ``quarantine``        messages that failed validation: topic, reason, raw payload (size-capped), repeats
- ``status_log``        device status history: every state/reason change, else one row per 10 min
- ``crops``             JPEG face crops received (file under ``state_dir/crops``), by score ``msg_id``
- ``sites``, ``rooms``, ``cages``   where cages are
- ``device_assignments`` which device watches which cage (and view) over which period
- ``animals``           animal id, strain, sex, coat, cage, housing (single/group), group
- ``groups``            treatment groups / cohorts (e.g. laparotomy, sham, laparotomy + analgesic)
- ``events``            timestamped events: surgery, analgesic, anaesthesia, handling, weight, other
- ``rollup_5m``, ``rollup_1h``  pre-aggregated score sums per (cage, animal, bucket) for fast time courses
- ``rejects_5m``, ``rejects_1h`` frames rejected per (device, bucket, reason), from status counter deltas
- ``clock_anchors``     per device boot: wall time - monotonic time, from a synchronized record
- ``meta``              key/value facts about this database (created, migrations applied)

The dashboard and the alert engine keep their own tables (alerts, users) in the same file, created by its own
code; their names never clash with the ones above.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import sqlite_utils

from amgs.contract import AU_KEYS

log = logging.getLogger(__name__)

SCORE_COLUMNS = (
    "msg_id",
    "device_id",
    "site",
    "cage_id",
    "animal_id",
    "view",
    "seq",
    "captured_at",
    "t",
    "received_at",
    "clock_synced",
    "boot_id",
    "monotonic_s",
    "model_name",
    "model_version",
    "model_sha256",
    "p_pain",
    "label",
    "is_pain",
    "amgs",
    "confidence",
    "needs_review",
    *(f"au_{k}" for k in AU_KEYS),
    "mgs_au",
    "sharpness",
    "exposure",
    "face_px",
    "motion",
    "asleep",
    "inference_ms",
    "has_crop",
    "face_box",
)

ROLLUP_TABLES = {300: "rollup_5m", 3600: "rollup_1h"}
"""Rollup bucket width in seconds -> table."""

ROLLUP_SUMS = (
    "n",
    "sum_amgs",
    "sumsq_amgs",
    "n_pain",
    "n_review",
    "n_unsynced",
    "n_au",
    *(f"sum_{k}" for k in AU_KEYS),
    "sum_mgs_au",
    "n_motion",
    "sum_motion",
    "n_asleep",
)


_V1 = f"""
CREATE TABLE scores (
    msg_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, site TEXT NOT NULL, cage_id TEXT NOT NULL,
    animal_id TEXT, view TEXT, seq INTEGER NOT NULL, captured_at TEXT NOT NULL, t REAL NOT NULL,
    received_at REAL NOT NULL, clock_synced INTEGER NOT NULL, boot_id TEXT, monotonic_s REAL,
    model_name TEXT, model_version TEXT, model_sha256 TEXT,
    p_pain REAL NOT NULL, label TEXT NOT NULL, is_pain INTEGER NOT NULL, amgs REAL NOT NULL,
    confidence REAL, needs_review INTEGER,
    {", ".join(f"au_{k} REAL" for k in AU_KEYS)}, mgs_au REAL,
    sharpness REAL, exposure REAL, face_px INTEGER, motion REAL, asleep INTEGER,
    inference_ms REAL, has_crop INTEGER, face_box TEXT
);
CREATE INDEX scores_cage_t ON scores (cage_id, t);
CREATE INDEX scores_animal_t ON scores (animal_id, t) WHERE animal_id IS NOT NULL;
CREATE INDEX scores_device_seq ON scores (device_id, seq);
CREATE INDEX scores_t ON scores (t);

CREATE TABLE devices (
    device_id TEXT PRIMARY KEY, site TEXT, registered INTEGER NOT NULL DEFAULT 0, notes TEXT,
    state TEXT, state_since REAL, reason TEXT, status_at TEXT, status_received_at REAL,
    last_seen REAL, last_score_t REAL, queue_depth INTEGER, unconfirmed INTEGER, reported_last_seq INTEGER,
    software TEXT, model_name TEXT, model_version TEXT, model_sha256 TEXT, last_capture_at TEXT,
    inference_ms REAL, disk_free_bytes INTEGER, cpu_temp_c REAL, clock_synced INTEGER,
    frames_json TEXT, rejected_json TEXT, errors_json TEXT, views_json TEXT, storage_warning TEXT,
    committed_seq INTEGER NOT NULL DEFAULT 0, max_seq INTEGER NOT NULL DEFAULT 0,
    scores_total INTEGER NOT NULL DEFAULT 0, duplicates INTEGER NOT NULL DEFAULT 0,
    gaps_total INTEGER NOT NULL DEFAULT 0, missing_open INTEGER NOT NULL DEFAULT 0,
    lost_total INTEGER NOT NULL DEFAULT 0, unsynced_total INTEGER NOT NULL DEFAULT 0,
    seq_resets INTEGER NOT NULL DEFAULT 0, seq_anomalies INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE seq_gaps (
    id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    size INTEGER NOT NULL, filled INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL DEFAULT 'open',
    detected_at REAL NOT NULL, closed_at REAL
);
CREATE INDEX seq_gaps_device ON seq_gaps (device_id, state);

CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY, received_at REAL NOT NULL, last_received_at REAL NOT NULL,
    topic TEXT NOT NULL, device_id TEXT, reason TEXT NOT NULL, payload BLOB, payload_size INTEGER NOT NULL,
    payload_sha1 TEXT NOT NULL, count INTEGER NOT NULL DEFAULT 1, UNIQUE (topic, payload_sha1)
);
CREATE INDEX quarantine_received ON quarantine (received_at);

CREATE TABLE status_log (
    id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, at TEXT NOT NULL, t REAL NOT NULL, received_at REAL NOT NULL,
    state TEXT NOT NULL, reason TEXT, queue_depth INTEGER, frames_json TEXT, rejected_json TEXT
);
CREATE INDEX status_log_device_t ON status_log (device_id, t);

CREATE TABLE crops (
    msg_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, received_at REAL NOT NULL, size INTEGER NOT NULL,
    path TEXT NOT NULL
);
CREATE INDEX crops_received ON crops (received_at);

CREATE TABLE sites (site_id TEXT PRIMARY KEY, name TEXT, notes TEXT);
CREATE TABLE rooms (room_id TEXT PRIMARY KEY, site_id TEXT, name TEXT, notes TEXT);
CREATE TABLE cages (cage_id TEXT PRIMARY KEY, site_id TEXT, room_id TEXT, name TEXT, notes TEXT);
CREATE TABLE device_assignments (
    id INTEGER PRIMARY KEY, device_id TEXT NOT NULL, cage_id TEXT NOT NULL, view TEXT,
    start_t REAL NOT NULL, end_t REAL, notes TEXT
);
CREATE INDEX device_assignments_device ON device_assignments (device_id);
CREATE TABLE groups (group_id TEXT PRIMARY KEY, name TEXT, description TEXT, study TEXT);
CREATE TABLE animals (
    animal_id TEXT PRIMARY KEY, cage_id TEXT, group_id TEXT, strain TEXT, sex TEXT, coat TEXT,
    housing TEXT, born TEXT, notes TEXT
);
CREATE INDEX animals_cage ON animals (cage_id);
CREATE INDEX animals_group ON animals (group_id);
CREATE TABLE events (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, t REAL NOT NULL, at TEXT NOT NULL,
    animal_id TEXT, cage_id TEXT, value REAL, unit TEXT, notes TEXT, created_at REAL
);
CREATE INDEX events_animal ON events (animal_id, t);
CREATE INDEX events_cage ON events (cage_id, t);

CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
"""


def _rollup_ddl(table: str) -> str:
    sums = ", ".join(
        f"{c} {'INTEGER' if c.startswith('n') else 'REAL'} NOT NULL DEFAULT 0" for c in ROLLUP_SUMS
    )
    return (
        f"CREATE TABLE {table} (cage_id TEXT NOT NULL, animal_id TEXT NOT NULL DEFAULT '', "
        f"bucket INTEGER NOT NULL, {sums}, PRIMARY KEY (cage_id, bucket, animal_id)) WITHOUT ROWID;"
        f"CREATE INDEX {table}_bucket ON {table} (bucket);"
        f"CREATE INDEX {table}_animal ON {table} (animal_id, bucket) WHERE animal_id != '';"
    )


def rollup_select(width: int, where: str = "1", sign: str = "") -> str:
    """SQL aggregating ``scores`` rows into rollup sums: the one definition. The migration backfills with
    it, the writer adds each batch with it, and re-anchoring moves scores with it (``sign="-"`` removes)."""
    exprs = {
        "n": "count(*)",
        "sum_amgs": "total(amgs)",
        "sumsq_amgs": "total(amgs * amgs)",
        "n_pain": "total(is_pain)",
        "n_review": "total(needs_review)",
        "n_unsynced": "total(1 - clock_synced)",
        "n_au": "count(au_ot)",
        **{f"sum_{k}": f"total(au_{k})" for k in AU_KEYS},
        "sum_mgs_au": "total(mgs_au)",
        "n_motion": "count(motion)",
        "sum_motion": "total(motion)",
        "n_asleep": "total(asleep)",
    }
    sums = ", ".join(f"{sign}{exprs[c]} AS {c}" for c in ROLLUP_SUMS)
    return (
        f"SELECT cage_id, coalesce(animal_id, '') AS animal_id, CAST(t / {width} AS INTEGER) * {width} AS bucket, "
        f"{sums} FROM scores WHERE {where} GROUP BY 1, 2, 3"
    )


def run_script(conn: sqlite3.Connection, sql: str) -> None:
    """Run DDL statements one by one inside the caller's transaction (executescript would commit it)."""
    for statement in sql.split(";"):
        if statement.strip():
            conn.execute(statement)


def _v1(db: sqlite_utils.Database) -> None:
    run_script(db.conn, _V1)


def _v2(db: sqlite_utils.Database) -> None:
    """Rollups for fast time courses, backfilled from the scores already stored."""
    for width, table in ROLLUP_TABLES.items():
        run_script(db.conn, _rollup_ddl(table))
        cols = ", ".join(("cage_id", "animal_id", "bucket", *ROLLUP_SUMS))
        db.conn.execute(f"INSERT INTO {table} ({cols}) {rollup_select(width)}")


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


REJECT_TABLES = {300: "rejects_5m", 3600: "rejects_1h"}
"""Frames rejected per device, reason and bucket (deltas of the devices' cumulative status counters)."""


def reject_deltas(previous: dict | None, current: dict | None) -> dict[str, int]:
    """Frames rejected between two cumulative counter snapshots (a counter that went down restarted)."""
    if not previous or not current:
        return {}
    out = {}
    for reason, value in current.items():
        try:
            value = int(value)
            delta = value - int(previous.get(reason, 0))
        except (TypeError, ValueError):
            continue
        delta = value if delta < 0 else delta
        if delta > 0:
            out[str(reason)] = delta
    return out


def add_rejects(conn: sqlite3.Connection, device_id: str, t: float, deltas: dict[str, int]) -> None:
    for width, table in REJECT_TABLES.items():
        conn.executemany(
            f"INSERT INTO {table} (device_id, bucket, reason, n) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (device_id, bucket, reason) DO UPDATE SET n = n + excluded.n",
            [(device_id, int(t // width) * width, reason, n) for reason, n in deltas.items()],
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


Migration = Callable[[sqlite_utils.Database], None]

MIGRATIONS: list[tuple[int, str, Migration]] = [
    (1, "scores, devices, gaps, quarantine, status, crops, study metadata", _v1),
    (2, "rollup_5m and rollup_1h, backfilled", _v2),
    (3, "devices.seq_epoch_start: when a device last restarted its numbering", _v3),
    (4, "clock re-anchoring: scores.clock_corrected, clock_anchors", _v4),
    (5, "rejects_5m and rejects_1h (backfilled from status_log), devices.status_t", _v5),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open (SQLite itself ends it on some errors, e.g. disk full)."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class DatabaseError(RuntimeError):
    """The database cannot be opened or migrated; the message says what to do."""


def _configure(conn: sqlite3.Connection, wal: bool, synchronous: str, max_db_mb: float) -> None:
    conn.execute("PRAGMA busy_timeout = 10000")
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    if max_db_mb:
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {max(1, int(max_db_mb * 1024 * 1024 / page))}")


class CollectorDB:
    """The database file plus how to open it. Each thread gets its own connection (:meth:`local`)."""

    def __init__(
        self, path: Path | str, *, wal: bool = True, synchronous: str = "FULL", max_db_mb: float = 0
    ) -> None:
        self.path = Path(path)
        self.wal = wal
        self.synchronous = synchronous
        self.max_db_mb = max_db_mb
        self._local = threading.local()

    @classmethod
    def from_config(cls, storage) -> CollectorDB:
        return cls(storage.db_path, wal=storage.wal, max_db_mb=storage.max_db_mb)

    def connect(self) -> sqlite_utils.Database:
        """A new connection in autocommit mode (callers use explicit BEGIN/COMMIT for batches)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            _configure(conn, self.wal, self.synchronous, self.max_db_mb)
        except sqlite3.Error as e:
            raise DatabaseError(f"cannot open database {self.path}: {e}") from None
        return sqlite_utils.Database(conn)

    def local(self) -> sqlite_utils.Database:
        """This thread's connection (opened on first use)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self.connect()
        return db

    def version(self) -> int:
        return self.local().execute("PRAGMA user_version").fetchone()[0]

    def migrate(
        self, backups_dir: Path | None = None, keep: int = 5, target: int = SCHEMA_VERSION
    ) -> list[int]:
        """Bring the schema to ``target``; back the file up first when it already holds a schema."""
        db = self.connect()
        try:
            current = db.execute("PRAGMA user_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise DatabaseError(
                    f"{self.path} has schema version {current}, newer than this software's {SCHEMA_VERSION}: "
                    "upgrade amgs or restore a backup from before the upgrade"
                )
            steps = [m for m in MIGRATIONS if current < m[0] <= target]
            if not steps:
                return []
            if current > 0 and backups_dir is not None:
                backup(db.conn, backups_dir, f"pre-v{steps[-1][0]}-from-v{current}", keep)
            done = []
            for version, what, run in steps:
                log.info("migrating %s to schema version %d: %s", self.path, version, what)
                db.execute("BEGIN IMMEDIATE")
                try:
                    run(db)
                    db.execute(f"PRAGMA user_version = {version}")
                    db.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        (f"migration.{version}", f"{time.time():.0f} {what}"),
                    )
                    db.execute("COMMIT")
                except BaseException:
                    rollback(db.conn)
                    raise
                done.append(version)
            return done
        finally:
            db.close()


def backup(conn: sqlite3.Connection, backups_dir: Path, label: str, keep: int = 5) -> Path:
    """Copy a live database (online backup API, consistent under WAL); keep the newest ``keep`` copies."""
    backups_dir.mkdir(parents=True, exist_ok=True)
    dest = backups_dir / f"collector-{time.strftime('%Y%m%dT%H%M%S')}-{label}.db"
    tmp = dest.with_suffix(".partial")
    target = sqlite3.connect(str(tmp))
    try:
        conn.backup(target)
    finally:
        target.close()
    shutil.move(tmp, dest)
    log.info("backed up the database to %s", dest)
    old = sorted(backups_dir.glob("collector-*.db"))
    for stale in old[: max(0, len(old) - keep)] if keep else []:
        stale.unlink(missing_ok=True)
    return dest


def open_database(config) -> CollectorDB:
    """Open (creating or migrating, with a backup first) the database a :class:`ServerConfig` names."""
    storage = config.storage
    db = CollectorDB.from_config(storage)
    db.migrate(storage.backups_dir if storage.backup_before_migrate else None, storage.backups_keep)
    return db
