"""Time-course queries on PostgreSQL next to SQLite: the 100 cages x 90 days database of bench_server.py.

    .venv/bin/python bench/bench_pg_queries.py
    .venv/bin/python bench/bench_pg_queries.py --dsn postgresql://postgres@127.0.0.1:5432/postgres --repeats 20

The database is built once in SQLite by ``bench_server.build_query_db`` (90 days of 5-min and 1-h rollups for
100 cages, reject rollups, 7 days of raw scores, animals, groups, surgery events), then copied table by table
(``COPY``) into a fresh PostgreSQL database migrated by the collector's own migrations (``storage.url``).
The same query functions (``server/query/timecourse.py``) run on both, interleaved, warm caches.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_server import build_query_db, queries  # noqa: E402

from amgs.server.config import parse_config  # noqa: E402
from amgs.server.storage.db import open_database  # noqa: E402


def copy_to_postgres(sqlite_path: Path, url: str) -> None:
    src = sqlite3.connect(str(sqlite_path))
    config = parse_config({"storage": {"url": url, "state_dir": str(sqlite_path.parent)}})
    pg = open_database(config).connect()
    for table in pg.table_names():
        if table == "meta":
            continue
        types = dict(
            pg.raw.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s",
                [table],
            ).fetchall()
        )
        sq_cols = [r[1] for r in src.execute(f"PRAGMA table_info({table})")]
        cols = [c for c in sq_cols if c in types]
        whole = [types[c] == "bigint" for c in cols]  # the synthetic rollups hold fractional counts
        cur = pg.raw.cursor()
        with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN") as copy:
            for row in src.execute(f"SELECT {', '.join(cols)} FROM {table}"):
                copy.write_row(
                    [round(v) if w and isinstance(v, float) else v for v, w in zip(row, whole, strict=True)]
                )
    pg.raw.execute("ANALYZE")
    pg.close()
    src.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--cages", type=int, default=100)
    ap.add_argument("--days", type=int, default=90)
    args = ap.parse_args()
    import psycopg

    workdir = Path(tempfile.mkdtemp(prefix="amgs-bench-pgq-"))
    t0 = time.perf_counter()
    sq_config, sq_db, end = build_query_db(workdir / "sqlite", args.cages, args.days)
    print(f"# SQLite database built in {time.perf_counter() - t0:.0f} s", flush=True)
    name = f"amgs_bench_q_{os.getpid()}"
    url = args.dsn.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(args.dsn, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(f"CREATE DATABASE {name}")
    try:
        t0 = time.perf_counter()
        copy_to_postgres(sq_config.storage.db_path, url)
        print(f"# copied into PostgreSQL in {time.perf_counter() - t0:.0f} s", flush=True)
        pg_config = parse_config({"storage": {"url": url, "state_dir": str(workdir / "pg")}})
        pg_db = open_database(pg_config)
        results = {"SQLite": {}, "PostgreSQL": {}}
        for _ in range(2):  # interleaved: each engine's figures are the better of two passes
            for label, (config, db) in (("SQLite", (sq_config, sq_db)), ("PostgreSQL", (pg_config, pg_db))):
                for q, r in queries(config, db, end, args.repeats).items():
                    best = results[label].get(q)
                    if best is None or r["median_ms"] < best["median_ms"]:
                        results[label][q] = r
        print(
            f"\n{args.cages} cages x {args.days} days, median (p95) of {args.repeats}, load {os.getloadavg()[0]:.1f}\n"
        )
        print("| query | SQLite ms | PostgreSQL ms | target |")
        print("| --- | --- | --- | --- |")
        targets = {"one cage, 1 h bins, 90 days": "< 50 ms", "facility overview, 100 cages, 24 h": "< 200 ms"}
        for q in results["SQLite"]:
            s, p = results["SQLite"][q], results["PostgreSQL"][q]
            print(
                f"| {q} | {s['median_ms']:.1f} ({s['p95_ms']:.1f}) | {p['median_ms']:.1f} ({p['p95_ms']:.1f}) | "
                f"{targets.get(q, '')} |"
            )
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
