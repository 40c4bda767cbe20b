"""The one transaction helper and the WHERE builder."""

import sqlite3

import pytest

from amgs.server.storage.sql import where
from amgs.sqlite_tx import write_transaction


def _conn(tmp_path):
    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    conn.execute("CREATE TABLE t(x INTEGER)")
    return conn


def test_commit_rollback_and_nested_savepoint(tmp_path):
    conn = _conn(tmp_path)
    with write_transaction(conn):
        conn.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(KeyboardInterrupt), write_transaction(conn):
        conn.execute("INSERT INTO t VALUES (2)")
        raise KeyboardInterrupt
    with write_transaction(conn):
        conn.execute("INSERT INTO t VALUES (3)")
        with pytest.raises(ValueError), write_transaction(conn):
            conn.execute("INSERT INTO t VALUES (4)")
            raise ValueError("inner block fails alone")
        conn.execute("INSERT INTO t VALUES (5)")
    assert [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")] == [1, 3, 5]
    assert not conn.in_transaction


def test_where_builder_skips_missing_filters():
    assert where() == ("", [])
    assert where({"cage_id": "C1", "animal_id": None}, ("t >= ?", [5.0]), "label IS NOT NULL") == (
        "WHERE cage_id = ? AND t >= ? AND label IS NOT NULL",
        ["C1", 5.0],
    )
    sql, params = where(None, ("cage_id = ? OR animal_id = ?", ["C1", "A1"]), ("t < ?", [9]))
    assert sql == "WHERE (cage_id = ? OR animal_id = ?) AND t < ?" and params == ["C1", "A1", 9]


def test_failed_commit_rolls_back(tmp_path):
    """A COMMIT that fails (here a deferred foreign key) leaves no transaction open and nothing written."""
    conn = sqlite3.connect(tmp_path / "fk.db", isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("CREATE TABLE parent(id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE child(pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
    with pytest.raises(sqlite3.IntegrityError), write_transaction(conn):
        conn.execute("INSERT INTO child VALUES (7)")
    assert not conn.in_transaction
    assert conn.execute("SELECT count(*) FROM child").fetchone()[0] == 0
