"""The ingest tests of tests/test_server_store.py again, on PostgreSQL (storage.url), unchanged.

Every test of that module is collected here too; an autouse fixture points its ``server_config`` at a fresh
PostgreSQL database and its ``Ingestor`` at the PostgreSQL ingestor (server/ingest/pg_ingest.py).
"""

from __future__ import annotations

import pytest
import server_support
import test_server_store
from pg_support import pg_databases  # noqa: F401  (fixture)
from test_server_store import *  # noqa: F403  (the tests and their fixtures, collected again)

from amgs.demo import loadgen
from amgs.server.ingest.pg_ingest import PgIngestor
from amgs.server.storage.pg import is_postgres


@pytest.fixture(autouse=True)
def on_postgres(monkeypatch, pg_databases):  # noqa: F811
    def config(tmp_path, broker=None, **sections):
        sections.setdefault("storage", {})["url"] = pg_databases.create()
        return server_support.server_config(tmp_path, broker, **sections)

    real = test_server_store.Ingestor

    def ingestor(db, config):
        return PgIngestor(db, config) if is_postgres(db) else real(db, config)

    monkeypatch.setattr(test_server_store, "_FUZZ", {})  # its cached ingestors belong to one test's database
    monkeypatch.setattr(test_server_store, "server_config", config)
    monkeypatch.setattr(test_server_store, "Ingestor", ingestor)


def test_commit_failure_rolls_back_state_and_acknowledges_nothing(tmp_path):
    """PostgreSQL's form of a failing commit: the server ends the collector's connection mid-batch (what a
    restart of PostgreSQL does). Nothing is stored or acknowledged; the next batch reconnects and stores."""
    import psycopg
    from pg_support import PG_ADMIN

    config = test_server_store.server_config(tmp_path)
    ing = test_server_store.Ingestor(test_server_store.open_database(config), config)
    test_server_store.scores(ing, [loadgen.score_message("d1", 1)])
    pid = ing.conn.raw.info.backend_pid
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    from amgs.server.ingest.writer import STORAGE_ERRORS

    batch = [loadgen.score_message("d1", s) for s in range(2, 6)]
    with pytest.raises(STORAGE_ERRORS):
        test_server_store.scores(ing, batch)
    assert ing.seqs.get("d1") is None or ing.seqs["d1"].committed == 1
    assert test_server_store.scores(ing, batch).watermarks["d1"] == ("lab", 5)  # reconnected
    assert test_server_store.q(ing, "SELECT count(*) FROM scores") == [(5,)]


def test_two_workers_storing_one_device_keep_one_watermark(tmp_path, pg_databases):  # noqa: F811
    """Two ingestors (two workers) store interleaved seqs of the same devices at once, with redeliveries
    crossing between them: every seq stored once, the watermark the last seq, gaps all filled."""
    import random
    import threading

    from amgs.server.storage.db import open_database as open_db

    config = server_support.server_config(tmp_path, storage={"url": pg_databases.create()})
    db = open_db(config)
    msgs = {d: [loadgen.score_message(d, s) for s in range(1, 401)] for d in ("d1", "d2")}
    work = [m for d in msgs for m in msgs[d]]
    random.Random(1).shuffle(work)
    halves = [work[0::2] + work[1::7], work[1::2] + work[0::9]]  # some messages reach both workers
    errors = []

    def worker(items, seed):
        ing = PgIngestor(db, config)
        rng = random.Random(seed)
        try:
            i = 0
            while i < len(items):
                n = rng.randint(1, 60)
                test_server_store.scores(ing, items[i : i + n])
                i += n
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(h, k)) for k, h in enumerate(halves)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    check = PgIngestor(db, config)
    assert test_server_store.q(
        check, "SELECT device_id, count(*), count(DISTINCT seq) FROM scores GROUP BY 1 ORDER BY 1"
    ) == [
        ("d1", 400, 400),
        ("d2", 400, 400),
    ]
    rows = test_server_store.q(
        check, "SELECT device_id, committed_seq, max_seq, missing_open, lost_total FROM devices ORDER BY 1"
    )
    assert rows == [("d1", 400, 400, 0, 0), ("d2", 400, 400, 0, 0)]
    assert check.all_watermarks() == {"d1": ("lab", 400), "d2": ("lab", 400)}
    n_rollup = test_server_store.q(check, "SELECT sum(n) FROM rollup_1h")[0][0]
    assert n_rollup == 800  # rollups counted each score once
