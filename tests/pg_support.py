"""PostgreSQL for the tests: a fresh database per test on the server ``AMGS_TEST_PG`` names.

Default ``postgresql://postgres@127.0.0.1:5432/postgres`` (the CI machine runs PostgreSQL 15 there, trust
auth). Tests that need it skip with the reason when psycopg or the server is missing.
"""

from __future__ import annotations

import os
import uuid

import pytest

PG_ADMIN = os.environ.get("AMGS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def pg_reason() -> str | None:
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install '.[postgres]')"
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3) as c:
            c.execute("SELECT 1")
    except Exception as e:
        return f"no PostgreSQL at {PG_ADMIN}: {e}"
    return None


def url_of(db: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + db


class PgDatabases:
    """Creates databases named amgs_test_*; drops them (forcing out connections) at the end."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def create(self) -> str:
        import psycopg

        name = f"amgs_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        self.names.append(name)
        return url_of(name)

    def drop_all(self) -> None:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            for name in self.names:
                c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.names.clear()


@pytest.fixture
def pg_databases():
    reason = pg_reason()
    if reason:
        pytest.skip(reason)
    dbs = PgDatabases()
    yield dbs
    dbs.drop_all()


def postgres_config(server_config, dbs: PgDatabases):
    """A test module's ``server_config(tmp_path, **sections)`` with ``storage.url`` a fresh database of ``dbs``
    (what the tests/test_pg_*.py modules patch into the module whose tests they collect again)."""

    def config(tmp_path, *args, **sections):
        sections["storage"] = {**sections.get("storage", {}), "url": dbs.create()}
        return server_config(tmp_path, *args, **sections)

    return config
