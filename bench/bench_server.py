"""Collector benchmark: ingest throughput through a real Mosquitto (batched vs one commit per message)
and time-course query latency on a synthetic 100 cages x 90 days database, printed side by side.

    .venv/bin/python bench/bench_server.py                 # full run (a few minutes)
    .venv/bin/python bench/bench_server.py --quick         # smaller, for a smoke check
    .venv/bin/python bench/bench_server.py --ingest-only   # the ingest part alone (~30 s)
    .venv/bin/python bench/bench_server.py --query-only    # the query part alone (~4 min, most of it the build)

Ingest is measured as a backlog drain, the collector's hardest realistic load (a broker holding a day of
scores after an outage): the collector's persistent session is created, the collector stopped, N scores
published into the broker's queue, then a fresh collector started and timed until all N are committed
(and acknowledged). The publisher does not compete with the collector for the CPU during the timing.

The query database holds 90 days of 5-min and 1-h rollups for 100 cages (about 10 images per cage per
5 min), 5-min and 1-h reject rollups (2 reasons), the last 7 days of raw scores, 100 animals in 10 groups
with surgery events.
Time-course queries read only the rollups, so raw-score retention does not change their cost.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from amgs.broker import LocalBroker
from amgs.contract import AU_KEYS
from amgs.demo import loadgen
from amgs.server.config import parse_config
from amgs.server.ingest.classify import score_row
from amgs.server.query import timecourse as tc
from amgs.server.query.overview import overview
from amgs.server.service import Collector
from amgs.server.storage.db import ROLLUP_SUMS, SCORE_COLUMNS, open_database

# ------------------------------------------------------------------ ingest


def drain(workdir: Path, broker: LocalBroker, n: int, batch_max: int, devices: int = 10) -> dict:
    config = parse_config(
        {
            "mqtt": {"port": broker.port, "client_id": f"bench-{batch_max}"},
            "storage": {"state_dir": str(workdir / f"state-{batch_max}")},
            "ingest": {"batch_max": batch_max, "batch_wait_ms": 20},
        }
    )
    first = Collector(config, with_http=False).start()
    while not first.mqtt.connected.is_set():
        time.sleep(0.02)
    time.sleep(0.3)
    first.stop()
    per_device = n // devices
    items = [
        loadgen.score_payload(loadgen.score_message(f"dev{d:02d}", s, cage_id=f"c{d:02d}"))
        for s in range(1, per_device + 1)
        for d in range(devices)
    ]
    loadgen.publish_all("127.0.0.1", broker.port, items)
    collector = Collector(config, with_http=False)
    children0 = _children_cpu()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    collector.start()
    while collector.stats.stored < len(items):
        time.sleep(0.005)
        if time.perf_counter() - t0 > 900:
            break
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    stats = collector.stats
    collector.stop()  # reaps the receiver process, so its CPU time is counted below
    receiver_cpu = _children_cpu() - children0
    return {
        "messages": len(items),
        "stored": stats.stored,
        "seconds": elapsed,
        "msg_per_s": stats.stored / elapsed,
        "cpu_s": cpu,
        "receiver_cpu_s": receiver_cpu,
        "msg_per_cpu_s": stats.stored / (cpu + receiver_cpu),
        "commits": stats.batches,
        "mean_batch": stats.stored / max(1, stats.batches),
    }


def _children_cpu() -> float:
    """CPU seconds of this process's reaped children (the collector's receiver once it has stopped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------ query database


def build_query_db(state_dir: Path, cages: int = 100, days: int = 90, seed: int = 1) -> tuple:
    config = parse_config({"storage": {"state_dir": str(state_dir)}})
    db = open_database(config)
    conn = db.connect().conn
    rng = np.random.default_rng(seed)
    now = time.time()
    end = int(now // 3600) * 3600
    start = end - days * 86400
    buckets5 = np.arange(start, end, 300)
    conn.execute("BEGIN")
    cols5 = ", ".join(("cage_id", "animal_id", "bucket", *ROLLUP_SUMS))
    marks = ", ".join("?" for _ in range(3 + len(ROLLUP_SUMS)))
    for c in range(cages):
        cage = f"c{c:03d}"
        animal = f"m{c:03d}"
        n = rng.poisson(10, len(buckets5)).astype(float)
        mean = np.clip(0.3 + 0.1 * rng.standard_normal(len(buckets5)), 0, 1)
        s = n * mean
        sq = n * (mean**2 + 0.02)
        pain = np.round(n * mean)
        unscorable = np.round(n * 0.05)
        named = {
            "n": n,
            "sum_amgs": s,
            "sumsq_amgs": sq,
            "n_pain": pain,
            "n_review": n * 0.1,
            "n_au": n,
            **{f"sum_{k}": n * mean * 2 for k in AU_KEYS},
            "sum_mgs_au": n * mean * 2,
            "n_motion": n,
            "sum_motion": n * 0.3,
            "n_asleep": n * 0.2,
            "n_unscorable": unscorable,
            "n_out_of_domain": unscorable,
        }
        rows5 = np.column_stack([named.get(c, np.zeros_like(n)) for c in ROLLUP_SUMS])  # every sum, by name
        conn.executemany(
            f"INSERT INTO rollup_5m ({cols5}) VALUES ({marks})",
            [(cage, animal, int(b), *row) for b, row in zip(buckets5.tolist(), rows5.tolist(), strict=True)],
        )
        hourly = rows5.reshape(-1, 12, rows5.shape[1]).sum(axis=1)
        conn.executemany(
            f"INSERT INTO rollup_1h ({cols5}) VALUES ({marks})",
            [(cage, animal, int(start + i * 3600), *row) for i, row in enumerate(hourly.tolist())],
        )
        conn.execute("INSERT INTO cages (cage_id, room_id) VALUES (?, ?)", [cage, f"room{c // 20}"])
        conn.execute(
            "INSERT INTO animals (animal_id, cage_id, group_id, housing) VALUES (?, ?, ?, 'single')",
            [animal, cage, f"g{c % 10}"],
        )
        conn.execute(
            "INSERT INTO events (kind, t, at, animal_id, cage_id) VALUES ('surgery', ?, ?, ?, ?)",
            [end - 5 * 86400 + c * 60, "", animal, cage],
        )
        device = f"dev{c:03d}"
        conn.execute(
            "INSERT INTO device_assignments (device_id, cage_id, start_t) VALUES (?, ?, ?)",
            [device, cage, start],
        )
        conn.execute("INSERT INTO devices (device_id, site, state) VALUES (?, 'lab', 'online')", [device])
        # rejected frames as the collector keeps them: per 5 min (blur, no_face) and per hour
        blur = rng.poisson(3, len(buckets5))
        no_face = rng.poisson(1, len(buckets5))
        conn.executemany(
            "INSERT INTO rejects_5m (device_id, bucket, reason, n) VALUES (?, ?, ?, ?)",
            [(device, b, r, n) for b, x, y in zip(buckets5.tolist(), blur.tolist(), no_face.tolist(), strict=True)
             for r, n in (("blur", x), ("no_face", y)) if n],
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO rejects_1h (device_id, bucket, reason, n) VALUES (?, ?, ?, ?)",
            [(device, start + i * 3600, r, int(n)) for i, (x, y) in
             enumerate(zip(blur.reshape(-1, 12).sum(1).tolist(), no_face.reshape(-1, 12).sum(1).tolist(), strict=True))
             for r, n in (("blur", x), ("no_face", y)) if n],
        )  # fmt: skip
        raw = []
        for seq, t in enumerate(range(end - 7 * 86400, end, 300), start=1):
            msg = loadgen.score_message(device, seq, cage_id=cage, animal_id=animal, t=float(t))
            row = score_row(msg, t)
            raw.append(tuple(row[k] for k in SCORE_COLUMNS))
        conn.executemany(
            f"INSERT INTO scores ({', '.join(SCORE_COLUMNS)}) VALUES ({', '.join('?' for _ in SCORE_COLUMNS)})",
            raw,
        )
    for g in range(10):
        conn.execute("INSERT INTO groups (group_id, name) VALUES (?, ?)", [f"g{g}", f"group {g}"])
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    return config, db, end


def timed(fn, repeats: int) -> dict:
    fn()  # warm the page cache once, as a running collector would be
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"median_ms": statistics.median(times), "p95_ms": times[int(0.95 * (len(times) - 1))]}


def queries(config, db, end: float, repeats: int) -> dict:
    conn = db.local().conn
    pp = config.photoperiod
    now = end

    def cage(days, bin_s):
        return lambda: tc.cage_timecourse(
            conn, "c042", start=end - days * 86400, end=end, bin_s=bin_s, now=now, photoperiod=pp
        )

    return {
        "one cage, 1 h bins, 7 days": timed(cage(7, 3600), repeats),
        "one cage, 1 h bins, 90 days": timed(cage(90, 3600), repeats),
        "one cage, 5 min bins, 24 h": timed(cage(1, 300), repeats),
        "one cage, 1 day bins, 90 days": timed(cage(90, 86400), repeats),
        "animal vs surgery, 1 h, baseline 24 h": timed(
            lambda: tc.animal_timecourse(
                conn,
                "m042",
                start=None,
                end=None,
                bin_s=3600,
                now=now,
                photoperiod=pp,
                event_kind="surgery",
                baseline_hours=24,
            ),
            repeats,
        ),
        "group of 10 animals vs surgery, 1 h": timed(
            lambda: tc.group_timecourse(
                conn, "g2", bin_s=3600, now=now, event_kind="surgery", baseline_hours=24
            ),
            repeats,
        ),
        "facility overview, 100 cages, 24 h": timed(lambda: overview(conn, now, 24), repeats),
    }


def ingest(work: Path, n_single: int, n_batched: int) -> None:
    with LocalBroker(workdir=work / "broker") as broker:
        print(f"# broker: {broker.kind} on port {broker.port}")
        single = drain(work, broker, n_single, batch_max=1)
        batched = drain(work, broker, n_batched, batch_max=1000)
    print("\n## ingest (backlog drain through the broker, commit before PUBACK)")
    print(
        f"{'mode':<28}{'scores':>10}{'seconds':>10}{'msg/s':>12}{'CPU s':>8}{'recv CPU':>9}{'msg/CPU-s':>11}"
        f"{'commits':>10}{'batch':>8}"
    )
    for name, r in (("one commit per message", single), ("batched (<= 1000 / commit)", batched)):
        print(
            f"{name:<28}{r['stored']:>10}{r['seconds']:>10.2f}{r['msg_per_s']:>12.0f}{r['cpu_s']:>8.2f}"
            f"{r['receiver_cpu_s']:>9.2f}{r['msg_per_cpu_s']:>11.0f}{r['commits']:>10}{r['mean_batch']:>8.1f}"
        )
    ratio = batched["msg_per_s"] / single["msg_per_s"]
    print(f"batched / per-message: {ratio:.1f}x (target >= 10x); batched target >= 10,000 msg/s")
    print(
        f"# load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; CPU s = the collector"
        " process (writer), recv CPU = its MQTT receiver process, msg/CPU-s = scores per CPU-second of both"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes for a smoke run")
    ap.add_argument("--messages", type=int, default=None, help="scores for the batched drain (default 50000)")
    ap.add_argument(
        "--per-message", type=int, default=None, help="scores for the one-commit-per-message drain"
    )
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument(
        "--ingest-only", action="store_true", help="skip the query part (no 90-day database build)"
    )
    ap.add_argument("--query-only", action="store_true", help="skip the ingest part (no broker)")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    n_batched = args.messages or (5000 if args.quick else 50000)
    n_single = args.per_message or (1000 if args.quick else 5000)
    days = 10 if args.quick else 90
    work = args.workdir or Path(tempfile.mkdtemp(prefix="amgs-bench-server-"))
    work.mkdir(parents=True, exist_ok=True)

    print(
        f"# collector benchmark - {platform.node()} {platform.machine()} Python {platform.python_version()}"
    )
    print(f"# workdir {work}; synchronous=FULL (each commit is on disk before its PUBACK)")
    if not args.query_only:
        ingest(work, n_single, n_batched)
    if args.ingest_only:
        return
    print(f"\n## time-course queries (synthetic 100 cages x {days} days; {args.repeats} runs each)")
    t0 = time.perf_counter()
    config, db, end = build_query_db(work / "query-state", days=days)
    size_mb = db.path.stat().st_size / 1e6
    print(f"# built in {time.perf_counter() - t0:.0f} s, {size_mb:.0f} MB")
    results = queries(config, db, end, args.repeats)
    print(f"{'query':<42}{'median ms':>12}{'p95 ms':>10}{'target':>10}")
    targets = {"one cage, 1 h bins, 90 days": "< 50", "one cage, 1 h bins, 7 days": "< 50"}
    targets["facility overview, 100 cages, 24 h"] = "< 200"
    for name, r in results.items():
        print(f"{name:<42}{r['median_ms']:>12.1f}{r['p95_ms']:>10.1f}{targets.get(name, ''):>10}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
