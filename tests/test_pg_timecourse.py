"""The time-course, export and HTTP API tests of tests/test_server_timecourse.py again, on PostgreSQL.

Every test of that module is collected here too; a module fixture points its ``server_config`` at a fresh
PostgreSQL database (storage.url) and its ``Ingestor`` at the PostgreSQL ingestor.
"""

from __future__ import annotations

import pytest
import server_support
import test_server_timecourse
from pg_support import PgDatabases, pg_reason
from test_server_timecourse import *  # noqa: F403  (the tests and their fixtures, collected again)

from amgs.server.ingest.pg_ingest import PgIngestor
from amgs.server.storage.pg import is_postgres


@pytest.fixture(scope="module", autouse=True)
def on_postgres():
    reason = pg_reason()
    if reason:
        pytest.skip(reason)
    dbs = PgDatabases()

    def config(tmp_path, broker=None, **sections):
        sections.setdefault("storage", {})["url"] = dbs.create()
        return server_support.server_config(tmp_path, broker, **sections)

    real = test_server_timecourse.Ingestor

    def ingestor(db, config):
        return PgIngestor(db, config) if is_postgres(db) else real(db, config)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(test_server_timecourse, "server_config", config)
        mp.setattr(test_server_timecourse, "Ingestor", ingestor)
        yield
    dbs.drop_all()
