"""The model-registry tests (tests/test_model_registry.py) and the Models page tests
(tests/test_models_page.py) again, on PostgreSQL (storage.url), unchanged.

Every test of both modules is collected here too: the registry's ``db`` fixture becomes a fresh PostgreSQL
database, the page's ``server_config`` points there (add, list, assign, promote, abandon, publish, shadow
agreement, agreement with human ratings, model files for devices, with accounts and CSRF).
"""

from __future__ import annotations

import pytest
import test_models_page
from pg_support import pg_databases, postgres_config  # noqa: F401  (fixture)
from test_model_registry import *  # noqa: F403  (the tests and their fixtures, collected again)
from test_models_page import *  # noqa: F403

from amgs.server.storage.pg import PgDatabase


@pytest.fixture(autouse=True)
def on_postgres(monkeypatch, pg_databases):  # noqa: F811
    monkeypatch.setattr(
        test_models_page, "server_config", postgres_config(test_models_page.server_config, pg_databases)
    )


@pytest.fixture
def db(pg_databases):  # noqa: F811
    d = PgDatabase(pg_databases.create())
    d.migrate()
    return d


_DEVICE_ONLY = "no collector database in it: the SQLite run covers it"


@pytest.mark.skip(reason=_DEVICE_ONLY)
def test_device_refuses_bytes_that_are_not_the_assigned_model():
    """Shadows the imported device-side test."""


@pytest.mark.skip(reason=_DEVICE_ONLY)
def test_device_rolls_back_when_the_new_model_fails_while_scoring():
    """Shadows the imported device-side test."""


def test_the_collected_tests_run_on_postgres(site, db):
    from amgs.server.storage.pg import is_postgres

    assert is_postgres(site[1]) and is_postgres(db.local())
