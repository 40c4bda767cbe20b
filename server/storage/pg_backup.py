"""Backups of a PostgreSQL collector database with ``pg_dump`` (the engine's own tool, custom format).

The dump is consistent while workers write (one snapshot transaction) and ``pg_restore`` reads it, whole or
table by table. The password, when the URL has one, goes to ``pg_dump`` through ``PGPASSWORD``, never on
its command line (which every local user can read in ``ps``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".pgdump"


def pg_dump_path() -> str:
    from .db import DatabaseError

    exe = shutil.which("pg_dump")
    if exe is None:
        raise DatabaseError(
            "pg_dump is not installed: install the PostgreSQL client of the server's major version or newer "
            "(Debian: apt-get install postgresql-client-15), or back up with your institution's own tooling"
        )
    return exe


def backup(url: str, backups_dir: Path, label: str, keep: int = 5, timeout_s: float = 3600) -> Path:
    """Dump the database at ``url`` into ``backups_dir``; keep the newest ``keep`` dumps (0 = all)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from .db import DatabaseError, prune_backups

    exe = pg_dump_path()
    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = dict(os.environ, **({"PGPASSWORD": str(password)} if password else {}))
    backups_dir.mkdir(parents=True, exist_ok=True)
    dest = backups_dir / f"collector-{time.strftime('%Y%m%dT%H%M%S')}-{label}{SUFFIX}"
    tmp = dest.with_suffix(".partial")
    command = [exe, "--format=custom", "--no-owner", f"--file={tmp}", f"--dbname={make_conninfo(**params)}"]
    try:
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        tmp.unlink(missing_ok=True)
        raise DatabaseError(
            f"pg_dump took longer than {timeout_s:.0f} s; the partial dump was removed"
        ) from None
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise DatabaseError(f"pg_dump failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    shutil.move(tmp, dest)
    log.info("backed up the PostgreSQL database to %s", dest)
    prune_backups(backups_dir, SUFFIX, keep)
    return dest
