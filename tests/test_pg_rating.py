"""The rating tests (tests/test_rating_pool.py, test_rating_sessions.py, test_rating_web.py,
test_rating_agreement.py, test_rating_cli.py, and the model-vs-human agreement alert of test_rating_alert.py)
again, on PostgreSQL (storage.url), unchanged.

Every test of those modules is collected here too; an autouse fixture points each module's ``server_config``
at a fresh PostgreSQL database: the daily sample into the pool, its expiry, blind sessions with repeats,
scoring over HTTP, the agreement figures and exports, and ``amgs server export-ratings`` / ``export
agreement``.
"""

from __future__ import annotations

import pytest
import test_rating_cli
import test_rating_pool
import test_rating_sessions
import test_rating_web
from pg_support import pg_databases, postgres_config  # noqa: F401  (fixture)
from test_rating_agreement import *  # noqa: F403  (the tests and their fixtures, collected again)
from test_rating_alert import test_the_collector_alert_runner_opens_the_agreement_alert  # noqa: F401
from test_rating_cli import *  # noqa: F403
from test_rating_pool import *  # noqa: F403
from test_rating_sessions import *  # noqa: F403
from test_rating_web import *  # noqa: F403

import tests.server_support


@pytest.fixture(autouse=True)
def on_postgres(monkeypatch, pg_databases):  # noqa: F811
    # test_rating_agreement imports server_config inside its one database test: patched at the source
    modules = (tests.server_support, test_rating_cli, test_rating_pool, test_rating_sessions, test_rating_web)
    for module in modules:
        monkeypatch.setattr(module, "server_config", postgres_config(module.server_config, pg_databases))


def test_the_collected_tests_run_on_postgres(setup):
    from amgs.server.storage.pg import is_postgres

    assert is_postgres(setup[1])
