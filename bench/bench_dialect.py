"""Why a dialect layer and not SQLAlchemy Core: the cost per statement, measured on the same PostgreSQL.

    .venv/bin/pip install sqlalchemy && .venv/bin/python bench/bench_dialect.py

Two statements the ingest path runs per device and per batch, executed N times each through (a) psycopg with
the collector's SQLite-dialect SQL translated by ``server/storage/pg.py`` (cached), (b) SQLAlchemy Core 2
expression objects on the same psycopg driver, (c) plain psycopg with hand-written PostgreSQL SQL (the floor).
Inside one transaction (rolled back), so no commit's fsync hides the difference. Interleaved, best of
3 rounds; microseconds per statement.
"""

from __future__ import annotations

import argparse
import os
import time

import psycopg


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("-n", type=int, default=3000)
    args = ap.parse_args()
    import sqlalchemy as sa

    from amgs.server.storage.pg import PgConnection

    name = f"amgs_bench_dialect_{os.getpid()}"
    url = args.dsn.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(args.dsn, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    try:
        raw = psycopg.connect(url, autocommit=True)
        for t in (
            "devices",
            "devices_b",
            "devices_c",
        ):  # one table per path: no path waits on another's locks
            raw.execute(
                f"CREATE TABLE {t} (device_id TEXT PRIMARY KEY, committed_seq BIGINT, last_score_t FLOAT8)"
            )
            raw.execute(f"INSERT INTO {t} SELECT 'd' || i, i, 0 FROM generate_series(1, 100) i")
        ours = PgConnection(url)
        engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        meta = sa.MetaData()
        devices = sa.Table("devices_b", meta, autoload_with=engine)
        sac = engine.connect()
        n = args.n

        def layer():
            ours.execute("BEGIN")
            for i in range(n):
                ours.execute(
                    "SELECT committed_seq FROM devices WHERE device_id = ?", [f"d{i % 100}"]
                ).fetchone()
                ours.execute(
                    "UPDATE devices SET last_score_t = max(coalesce(last_score_t, 0), ?) WHERE device_id = ?",
                    [float(i), f"d{i % 100}"],
                )
            ours.execute("ROLLBACK")

        def core():
            for i in range(n):
                sac.execute(
                    sa.select(devices.c.committed_seq).where(devices.c.device_id == f"d{i % 100}")
                ).fetchone()
                sac.execute(
                    devices.update()
                    .where(devices.c.device_id == f"d{i % 100}")
                    .values(
                        last_score_t=sa.func.greatest(sa.func.coalesce(devices.c.last_score_t, 0), float(i))
                    )
                )

        def plain():
            for i in range(n):
                raw.execute(
                    "SELECT committed_seq FROM devices_c WHERE device_id = %s", [f"d{i % 100}"]
                ).fetchone()
                raw.execute(
                    "UPDATE devices_c SET last_score_t = greatest(coalesce(last_score_t, 0), %s) WHERE device_id = %s",
                    [float(i), f"d{i % 100}"],
                )
            raw.execute("ROLLBACK")

        best = {}
        for _ in range(3):
            for label, fn in (
                ("dialect layer (translate, cached)", layer),
                ("SQLAlchemy Core 2", core),
                ("psycopg, PostgreSQL SQL", plain),
            ):
                t0 = time.perf_counter()
                fn()
                us = (time.perf_counter() - t0) / (2 * n) * 1e6
                best[label] = min(best.get(label, us), us)
        floor = best["psycopg, PostgreSQL SQL"]
        print(f"\n{2 * n} statements each, best of 3, load {os.getloadavg()[0]:.1f}\n")
        print("| path | us per statement | over plain psycopg |")
        print("| --- | --- | --- |")
        for label, us in best.items():
            print(f"| {label} | {us:.0f} | +{us - floor:.0f} us |")
        sac.close()
        engine.dispose()
        ours.close()
        raw.close()
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
