"""Schema version 8 (the rating tables): an existing version-7 database upgrades with everything kept
(backup first), gets the same schema as a new one, and ratings travel in the collector's backups."""

import sqlite3

from amgs.contract import AU_KEYS
from amgs.server.storage.db import SCHEMA_VERSION, CollectorDB, backup, open_database
from amgs.server.web import auth
from tests.rating_helpers import add_score
from tests.server_support import server_config

RATING_TABLES = ("rating_items", "rating_days", "ratings", "rating_changes", "rater_sessions", "rater_queue")


def tables(path, columns_of=None):
    """Every row of every table; with ``columns_of`` (an older file), only the columns that file's
    tables have (later schema versions add columns to existing tables)."""

    def columns(conn, name):
        return [r[1] for r in conn.execute(f"PRAGMA table_info({name})")]

    old = sqlite3.connect(columns_of) if columns_of else None
    try:
        with sqlite3.connect(path) as conn:
            out = {}
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                if name.startswith("sqlite_"):
                    continue
                cols = columns(old, name) if old else []
                what = ", ".join(c for c in columns(conn, name) if c in cols) if cols else "*"
                out[name] = sorted(conn.execute(f"SELECT {what} FROM {name}").fetchall(), key=repr)
            return out
    finally:
        if old:
            old.close()


def schema(path):
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name"
        ).fetchall()


def test_upgrade_from_version_7_keeps_every_row_and_adds_the_rating_tables(tmp_path):
    config = server_config(tmp_path)
    old = CollectorDB(config.storage.db_path)
    old.migrate(target=7)
    db6 = old.local()
    add_score(db6.conn, config.storage.state_dir, "m1", "C1", 1_772_400_000.0, 0.7)
    auth.add_user(db6, "vet", "correct horse battery", "staff")
    before = tables(config.storage.db_path)
    assert not set(RATING_TABLES) & set(before)
    db6.conn.close()

    db = open_database(config)
    assert db.version() == SCHEMA_VERSION >= 8
    (copy,) = config.storage.backups_dir.glob("collector-*-from-v7.db")
    assert tables(copy) == before
    after = tables(config.storage.db_path, columns_of=copy)
    assert {k: v for k, v in after.items() if k in before and k != "meta"} == {
        k: v for k, v in before.items() if k != "meta"
    }
    assert all(after[t] == [] for t in RATING_TABLES)
    fresh = server_config(tmp_path / "new")
    open_database(fresh)
    assert schema(config.storage.db_path) == schema(fresh.storage.db_path)

    # ratings are in the database file, so the collector's backups carry them
    conn = db.local().conn
    conn.execute(
        "INSERT INTO rating_items (item_id, msg_id, sampled_at, day, stratum, t, device_id, cage_id) "
        "VALUES (1, 'm1', 1, '2026-03-02', 'random', 1, 'dev1', 'C1')"
    )
    conn.execute(
        f"INSERT INTO ratings (item_id, rater, rated_at, {', '.join('au_' + k for k in AU_KEYS)}) "
        "VALUES (1, 'ann', 2, 0, 1, 2, NULL, 1)"
    )
    copy = backup(conn, config.storage.backups_dir, "manual")
    assert tables(copy)["ratings"] == tables(config.storage.db_path)["ratings"] != []
    # the database refuses what is not a score on the MGS scale
    try:
        conn.execute("INSERT INTO ratings (item_id, rater, rated_at, au_ot) VALUES (1, 'bob', 3, 3)")
    except sqlite3.IntegrityError:
        pass
    else:
        raise AssertionError("au_ot = 3 was accepted")
