"""The dashboard-access tests of tests/test_web_auth.py again, on PostgreSQL (storage.url), unchanged.

Every test of that module is collected here too; an autouse fixture points its ``server_config`` at a fresh
PostgreSQL database: log-in, sessions, CSRF, API tokens, roles and the ``amgs server user`` CLI through the
same SQL as on SQLite (server/web/auth.py), acknowledging and resolving alerts included. The log-in throttle keeps its counts in memory, not in the
database: tests/test_web_login_throttle.py has nothing engine-specific to run here.
"""

from __future__ import annotations

import pytest
import test_web_auth
from pg_support import pg_databases, postgres_config  # noqa: F401  (fixture)
from test_web_auth import *  # noqa: F403  (the tests and their fixtures, collected again)


@pytest.fixture(autouse=True)
def on_postgres(monkeypatch, pg_databases):  # noqa: F811
    monkeypatch.setattr(
        test_web_auth, "server_config", postgres_config(test_web_auth.server_config, pg_databases)
    )


def test_the_collected_tests_run_on_postgres(site):
    from amgs.server.storage.pg import is_postgres

    _, udb, app = site
    assert is_postgres(udb) and is_postgres(app.state.db)
