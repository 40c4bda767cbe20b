"""The collector's SQLite database: how to open it, migrate it (with a backup first) and back it up.

One file (``storage.state_dir/collector.db``) in WAL mode, opened through sqlite-utils. The schema
version is SQLite's ``PRAGMA user_version``; ``migrations.MIGRATIONS`` lists every step from an empty
file (every table of the collector, the dashboard's accounts and the alerts included: ``schema.py``),
and an existing database is copied to ``backups/`` before any step runs on it. ``datasette
collector.db`` opens the file read-only for ad-hoc queries (see docs/server.md).

The names of ``schema.py`` and ``migrations.py`` are re-exported here: ``from amgs.server.storage.db
import SCORE_COLUMNS, SCHEMA_VERSION, ...`` keeps working.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import sqlite_utils

from amgs.sqlite_tx import rollback, write_transaction

from .migrations import MIGRATIONS, SCHEMA_VERSION, Migration, run_script
from .schema import (
    REJECT_TABLES,
    ROLLUP_SUMS,
    ROLLUP_TABLES,
    SCORE_COLUMNS,
    add_rejects,
    reject_deltas,
    rollup_select,
)

__all__ = [
    "MIGRATIONS",
    "REJECT_TABLES",
    "ROLLUP_SUMS",
    "ROLLUP_TABLES",
    "SCHEMA_VERSION",
    "SCORE_COLUMNS",
    "CollectorDB",
    "DatabaseError",
    "Migration",
    "add_rejects",
    "backup",
    "open_database",
    "reject_deltas",
    "require_schema",
    "rollback",
    "rollup_select",
    "run_script",
]

log = logging.getLogger(__name__)


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
        """A new connection in autocommit mode (writers use ``amgs.sqlite_tx.write_transaction``)."""
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
        """Bring the schema to ``target``; back the file up first when it already holds tables."""
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
            if backups_dir is not None and (current > 0 or db.table_names()):
                backup(db.conn, backups_dir, f"pre-v{steps[-1][0]}-from-v{current}", keep)
            done = []
            for version, what, run in steps:  # each step in its own transaction, after the backup above
                log.info("migrating %s to schema version %d: %s", self.path, version, what)
                with write_transaction(db):
                    run(db)
                    db.execute(f"PRAGMA user_version = {version}")
                    db.execute(
                        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        (f"migration.{version}", f"{time.time():.0f} {what}"),
                    )
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
    prune_backups(backups_dir, ".db", keep)
    return dest


def prune_backups(backups_dir: Path, suffix: str, keep: int) -> None:
    """Keep the newest ``keep`` ``collector-*{suffix}`` copies (0 = all); their names sort by time."""
    old = sorted(backups_dir.glob(f"collector-*{suffix}"))
    for stale in old[: max(0, len(old) - keep)] if keep else []:
        stale.unlink(missing_ok=True)


def require_schema(db: sqlite_utils.Database | sqlite3.Connection, what: str = "this") -> None:
    """Refuse to work on a database that is not at this software's schema version, saying what to do.

    Code that gets a connection instead of opening the database itself (the dashboard, the alert engine)
    calls this rather than creating tables: only :meth:`CollectorDB.migrate` changes the schema.
    """
    conn = db if isinstance(db, sqlite3.Connection) else db.conn
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    name = (
        next((row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "") or "database"
    )
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"{name} has schema version {version}, newer than this software's {SCHEMA_VERSION}: upgrade amgs"
        )
    raise DatabaseError(
        f"{name} has schema version {version}, {what} needs {SCHEMA_VERSION}: run `amgs server migrate` "
        "(the collector also migrates on start, with a backup first)"
    )


def open_database(config) -> CollectorDB:
    """Open (creating or migrating, with a backup first) the database a :class:`ServerConfig` names."""
    storage = config.storage
    if storage.url:  # PostgreSQL: the same migrations through the dialect layer (pg.py)
        from .pg import PgDatabase

        db = PgDatabase(storage.url)
        db.migrate(storage.backups_dir if storage.backup_before_migrate else None, storage.backups_keep)
        return db
    db = CollectorDB.from_config(storage)
    db.migrate(storage.backups_dir if storage.backup_before_migrate else None, storage.backups_keep)
    return db
