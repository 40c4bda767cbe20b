"""PostgreSQL backups: `amgs server backup` dumps with pg_dump (restorable), and a schema upgrade dumps first."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from click.testing import CliRunner
from pg_support import pg_databases  # noqa: F401 - fixture

from amgs.cli import main

needs_pg_tools = pytest.mark.skipif(
    shutil.which("pg_dump") is None or shutil.which("pg_restore") is None,
    reason="pg_dump / pg_restore not installed (postgresql-client)",
)


def _config(tmp_path, url: str):
    path = tmp_path / "server.toml"
    path.write_text(f'[storage]\nstate_dir = "{tmp_path / "state"}"\nurl = "{url}"\nbackups_keep = 2\n')
    return path


@needs_pg_tools
def test_backup_dumps_a_restorable_copy_and_keeps_the_newest(tmp_path, pg_databases):  # noqa: F811
    import psycopg

    url = pg_databases.create()
    config = _config(tmp_path, url)
    runner = CliRunner()
    r = runner.invoke(main, ["server", "migrate", "--config", str(config)])
    assert r.exit_code == 0, r.output
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("INSERT INTO cages (cage_id, name) VALUES ('C7', 'seven')")
    dumps = []
    for _ in range(3):
        r = runner.invoke(main, ["server", "backup", "--config", str(config)])
        assert r.exit_code == 0, r.output
        dumps.append(r.output.strip().splitlines()[-1])
    kept = sorted((tmp_path / "state" / "backups").glob("collector-*.pgdump"))
    assert len(kept) <= 2 and str(kept[-1]) in dumps  # backups_keep = 2
    restored = pg_databases.create()
    proc = subprocess.run(
        ["pg_restore", "--no-owner", f"--dbname={restored}", str(kept[-1])], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    with psycopg.connect(restored) as c:
        assert c.execute("SELECT name FROM cages WHERE cage_id = 'C7'").fetchone() == ("seven",)


@needs_pg_tools
def test_a_schema_upgrade_on_postgresql_dumps_the_old_database_first(tmp_path, pg_databases):  # noqa: F811
    from amgs.server.storage.pg import PgDatabase

    url = pg_databases.create()
    db = PgDatabase(url)
    db.migrate(target=8)
    assert db.version() == 8
    backups = tmp_path / "backups"
    done = db.migrate(backups, keep=5)
    assert done and done[0] == 9
    (dump,) = backups.glob("collector-*-before-v9.pgdump")
    listing = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, text=True)
    assert listing.returncode == 0 and "TABLE public scores" in listing.stdout
    assert (
        db.migrate(backups, keep=5) == [] and len(list(backups.glob("*.pgdump"))) == 1
    )  # nothing to do: no dump


def test_a_missing_pg_dump_says_what_to_install(tmp_path, monkeypatch):
    from amgs.server.storage.db import DatabaseError
    from amgs.server.storage.pg_backup import backup

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DatabaseError, match="pg_dump is not installed.*postgresql-client"):
        backup("postgresql://nobody@127.0.0.1/none", tmp_path / "b", "manual")
