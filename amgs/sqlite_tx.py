"""The one way to write to SQLite in this project: ``with write_transaction(conn): ...``.

Used by the device's outbox and by every writer on the collector. ``BEGIN IMMEDIATE`` takes the write
lock up front, so a read-then-write never fails with "database is locked" when another connection
committed in between (WAL snapshot upgrade). Inside a transaction that is already open, the block
becomes a savepoint, so helpers can be composed. Standard library only: it runs on the device.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any


def _connection(db: Any) -> sqlite3.Connection:
    """A ``sqlite3.Connection`` from itself or from a sqlite-utils ``Database`` (its ``.conn``)."""
    return db if isinstance(db, sqlite3.Connection) else db.conn


def rollback(db: Any) -> None:
    """Roll back if a transaction is still open (SQLite itself ends it on some errors, e.g. disk full)."""
    conn = _connection(db)
    if conn.in_transaction:
        conn.execute("ROLLBACK")


@contextlib.contextmanager
def write_transaction(db: Any) -> Iterator[Any]:
    """Run the block in one write transaction on ``db`` (a connection or a sqlite-utils Database).

    Commits when the block ends, rolls back (and re-raises) when it or the commit raises, including
    ``KeyboardInterrupt``. Nested use becomes a savepoint released or rolled back with the block.
    """
    conn = _connection(db)
    if conn.in_transaction:
        conn.execute("SAVEPOINT amgs_nested")
        try:
            yield db
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO amgs_nested")
                conn.execute("RELEASE amgs_nested")
            raise
        conn.execute("RELEASE amgs_nested")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
        conn.execute("COMMIT")  # a COMMIT that fails (disk full, I/O error) rolls back too
    except BaseException:
        rollback(conn)
        raise
