"""Retention on PostgreSQL: how fast the collector's chunked delete removes a day of raw scores.

Why there are no monthly partitions: PostgreSQL requires every unique index of a partitioned table to include
the partition key, so ``scores`` could no longer be unique by ``msg_id`` alone, and the idempotent insert
(``ON CONFLICT (msg_id) DO NOTHING``, the no-duplicates guarantee) would need a second table. Retention
instead deletes by ``t`` (indexed) in chunks of 5,000 (``server/ingest/retention.py``), the same code as on
SQLite. This bench fills a fresh database with ``--days`` of ``--cages`` cages at one score per
``--every`` seconds, then times :func:`apply_retention` removing the oldest day, and prints rows/s and how
long a day of this facility takes to delete.

    .venv/bin/python bench/bench_pg_retention.py --cages 100 --days 2 --every 10
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

PG_ADMIN = os.environ.get("AMGS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cages", type=int, default=100)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between scores per cage")
    args = ap.parse_args()

    import psycopg

    from amgs.server.config import parse_config
    from amgs.server.ingest.retention import apply_retention
    from amgs.server.storage.db import open_database

    name = f"amgs_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = parse_config(
                {"storage": {"state_dir": tmp, "url": url, "raw_retention_days": args.days - 1}}
            )
            db = open_database(config)
            now = time.time()
            per_cage = int(args.days * 86400 / args.every)
            t0 = time.perf_counter()
            with psycopg.connect(url, autocommit=True) as c:
                c.execute(
                    "INSERT INTO scores (msg_id, device_id, site, cage_id, seq, captured_at, t, received_at, "
                    "clock_synced, p_pain, label, is_pain, amgs) "
                    "SELECT md5(g::text || '-' || cg::text), 'dev' || cg, 'lab', 'C' || cg, g, '', "
                    "%s - g * %s, %s, 1, 0.3, 'no pain', 0, 0.3 "
                    "FROM generate_series(1, %s) g, generate_series(1, %s) cg",
                    [now, args.every, now, per_cage, args.cages],
                )
                c.execute("ANALYZE scores")
                total = c.execute("SELECT count(*) FROM scores").fetchone()[0]
            fill_s = time.perf_counter() - t0
            conn = db.local()
            t0 = time.perf_counter()
            deleted = apply_retention(conn, config.storage, now)["scores"]
            delete_s = time.perf_counter() - t0
            left = conn.execute("SELECT count(*) FROM scores").fetchone()[0]
            conn.close()
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    per_day = args.cages * 86400 / args.every
    rate = deleted / delete_s if delete_s else float("inf")
    print(
        f"filled {total:,} scores ({args.cages} cages x {args.days} days, one per {args.every:g} s) in {fill_s:.1f} s"
    )
    print(f"retention deleted {deleted:,} (kept {left:,}) in {delete_s:.2f} s: {rate:,.0f} rows/s")
    print(
        f"one day of this facility ({per_day:,.0f} scores) takes {per_day / rate:.1f} s to delete, hourly job"
    )


if __name__ == "__main__":
    main()
