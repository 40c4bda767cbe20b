"""Collector workers on NATS JetStream into a shared database, 1/2/4 workers, next to one collector on Mosquitto.

    .venv/bin/python bench/bench_scaleout.py                        # SQLite, 1/2/4 workers + the baseline
    .venv/bin/python bench/bench_scaleout.py --storage postgres     # PostgreSQL (storage.url), when available
    .venv/bin/python bench/bench_scaleout.py -n 10000 --workers 1,2

A backlog drain, as bench/bench_server.py measures one collector: N score records (10 devices, the real wire
format) are published over MQTT QoS 1 into the engine while no worker runs (the stream and its durable
consumer exist), then k real ``amgs server run`` processes are started together and timed from their start
until every record is in the database; the database is counted by (device, seq): lost / stored twice.
The baseline is today's collector (``stream.engine = "mqtt"``: one process + its receiver) draining the same
N from Mosquitto. Rounds are interleaved so the machine's load hits every configuration alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amgs.broker import LocalBroker
from amgs.demo import loadgen
from amgs.engines import LocalNats

AMGS = str(Path(sys.executable).with_name("amgs"))
DEVICES = 10


def records(n: int) -> list[tuple[str, bytes]]:
    return [
        loadgen.score_payload(loadgen.score_message(f"dev{d:02d}", s, cage_id=f"c{d:02d}"))
        for s in range(1, n // DEVICES + 1)
        for d in range(DEVICES)
    ]


class SqliteStore:
    name = "SQLite"

    def __init__(self, root: Path) -> None:
        self.root = root

    def section(self, tag: str) -> str:
        return f'[storage]\nstate_dir = "{self.root / tag}"\nbackup_every_h = 0\n'

    def counts(self, tag: str) -> tuple[int, int]:
        db = self.root / tag / "collector.db"
        if not db.exists():
            return 0, 0
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
            try:
                return conn.execute(
                    "SELECT count(*), count(DISTINCT device_id || ':' || seq) FROM scores"
                ).fetchone()
            finally:
                conn.close()
        except sqlite3.OperationalError:
            return 0, 0


class PostgresStore:
    name = "PostgreSQL"

    def __init__(self, root: Path, dsn: str) -> None:
        import psycopg

        self.root, self.dsn, self.psycopg = root, dsn, psycopg
        self.dbs: list[str] = []

    def _url(self, db: str) -> str:
        return self.dsn.rsplit("/", 1)[0] + "/" + db

    def section(self, tag: str) -> str:
        db = f"amgs_bench_{os.getpid()}_{tag}".replace("-", "_")
        with self.psycopg.connect(self.dsn, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {db}")
            c.execute(f"CREATE DATABASE {db}")
        self.dbs.append(db)
        return f'[storage]\nstate_dir = "{self.root / tag}"\nbackup_every_h = 0\nurl = "{self._url(db)}"\n'

    def counts(self, tag: str) -> tuple[int, int]:
        db = f"amgs_bench_{os.getpid()}_{tag}".replace("-", "_")
        try:
            with self.psycopg.connect(self._url(db)) as c:
                return c.execute("SELECT count(*), count(DISTINCT (device_id, seq)) FROM scores").fetchone()
        except self.psycopg.Error:
            return 0, 0

    def close(self) -> None:
        with self.psycopg.connect(self.dsn, autocommit=True) as c:
            for db in self.dbs:
                c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def write_conf(path: Path, store, tag: str, body: str, batch_max: int = 1000) -> Path:
    ingest = (
        f"[ingest]\nbatch_max = {batch_max}\nbatch_wait_ms = 20\ncrop_request_every_s = 0\n[http]\nport = 0\n"
    )
    path.write_text('log_level = "INFO"\n' + body + store.section(tag) + ingest)
    return path


def drain(store, tag: str, procs: list, n: int, t0: float) -> dict:
    """Poll the database until all n are stored; the rate counts from t0 (or the first commit, if later)."""
    stored = distinct = 0
    first = None
    while time.perf_counter() - t0 < 300:
        stored, distinct = store.counts(tag)
        if stored and first is None:
            first = (time.perf_counter(), stored)
        if stored >= n or any(p.poll() is not None for p in procs):
            break
        time.sleep(0.02)
    end = time.perf_counter()
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(30)
    t_first, at_first = first or (t0, 0)
    return {
        "stored": stored,
        "lost": n - distinct,
        "twice": stored - distinct,
        "per_s": (stored - at_first) / max(1e-6, end - t_first),
    }


def start(conf: Path, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [AMGS, "server", "run", "--config", str(conf)], stdout=out, stderr=subprocess.STDOUT
        )


def nats_round(
    store, nats: LocalNats, k: int, n: int, round_no: int, workdir: Path, batch_max: int = 1000
) -> dict:
    """The backlog waits in a stream of its own; once all k workers are bound to their (empty) stream, that
    stream starts sourcing the backlog: the k workers see it at the same moment, start-up excluded."""
    import nats as nats_py
    from nats.js.api import ConsumerConfig, StreamConfig, StreamSource

    from amgs.server.config import parse_config
    from amgs.server.ingest.jetstream import ensure_stream

    tag = f"nats{k}-b{batch_max}-r{round_no}"
    backlog, stream = f"B{k}X{batch_max}R{round_no}", f"W{k}X{batch_max}R{round_no}"

    async def setup():
        nc = await nats_py.connect(nats.url)
        js = nc.jetstream()
        for info in await js.streams_info():  # the device subjects go to one stream at a time
            if not info.config.name.startswith("$"):  # NATS's own MQTT streams stay
                await js.delete_stream(info.config.name)
        await ensure_stream(js, parse_config({"stream": {"stream": backlog}}).stream, "+")
        await js.add_stream(StreamConfig(name=stream, subjects=[f"bench.{stream}"]))
        await js.add_consumer(
            stream, ConsumerConfig(durable_name="amgs-collector", max_ack_pending=20_000, ack_wait=60)
        )
        await nc.close()

    async def release():
        nc = await nats_py.connect(nats.url)
        js = nc.jetstream()
        await js.update_stream(
            StreamConfig(name=stream, subjects=[f"bench.{stream}"], sources=[StreamSource(name=backlog)])
        )
        await nc.close()

    asyncio.run(setup())
    loadgen.publish_all("127.0.0.1", nats.mqtt_port, records(n), client_id=f"pub-{tag}")
    body = (
        f'[mqtt]\nhost = "127.0.0.1"\nport = {nats.mqtt_port}\nclient_id = "w-{tag}"\n'
        f'[stream]\nengine = "nats"\nurl = "{nats.url}"\nstream = "{stream}"\ncreate = false\nfetch_batch = 1000\n'
    )
    procs = []
    for i in range(k):  # one after the other: a new database is created by the first
        log = workdir / f"{tag}-{i}.log"
        procs.append(start(write_conf(workdir / f"{tag}-{i}.toml", store, tag, body, batch_max), log))
        deadline = time.monotonic() + 120
        while "bound to" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.1)
    t0 = time.perf_counter()
    asyncio.run(release())
    return drain(store, tag, procs, n, t0)


def make_session(port: int, client_id: str) -> None:
    """What the collector's first start leaves at the broker: a persistent session subscribed to the devices."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from amgs.contract import collector_subscriptions

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect("127.0.0.1", port, clean_start=False, properties=props)
    c.loop_start()
    c.subscribe([(t, 1) for t in collector_subscriptions("+")])[1]
    time.sleep(0.5)
    c.disconnect()
    c.loop_stop()


def mqtt_round(store, broker: LocalBroker, n: int, round_no: int, workdir: Path) -> dict:
    tag = f"mqtt-r{round_no}"
    body = f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nclient_id = "c-{tag}"\n'
    conf = write_conf(workdir / f"{tag}.toml", store, tag, body)
    make_session(broker.port, f"c-{tag}")  # the collector's persistent session exists before the backlog
    loadgen.publish_all("127.0.0.1", broker.port, records(n), client_id=f"pub-{tag}")
    return drain(store, tag, [start(conf, workdir / f"{tag}.log")], n, time.perf_counter())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20_000)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--storage", choices=["sqlite", "postgres", "both"], default="sqlite")
    ap.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument(
        "--per-message", type=int, default=2000, help="scores for the one-commit-per-message row; 0 = skip"
    )
    args = ap.parse_args()
    print(f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    workdir = Path(tempfile.mkdtemp(prefix="amgs-bench-scaleout-"))
    stores = []
    if args.storage in ("sqlite", "both"):
        stores.append(SqliteStore(workdir / "sqlite"))
    if args.storage in ("postgres", "both"):
        stores.append(PostgresStore(workdir / "pg", args.dsn))
    nats = LocalNats(workdir / "nats").start()
    broker = LocalBroker(workdir=workdir / "mosquitto").start()
    rows = []
    try:
        for r in range(args.rounds):
            for store in stores:
                res = mqtt_round(store, broker, args.n, r, workdir)
                rows.append((store.name, "one collector, Mosquitto (today)", 1, res))
                print(f"# {rows[-1]}", flush=True)
                for k in (int(x) for x in args.workers.split(",")):
                    res = nats_round(store, nats, k, args.n, r, workdir)
                    rows.append((store.name, "NATS JetStream workers", k, res))
                    print(f"# {rows[-1]}", flush=True)
                if args.per_message:  # one commit per message: what batching buys
                    res = nats_round(store, nats, 1, args.per_message, r, workdir, batch_max=1)
                    rows.append((store.name, "NATS worker, one commit per message", 1, res))
                    print(f"# {rows[-1]}", flush=True)
    finally:
        nats.stop()
        broker.stop()
        for store in stores:
            if hasattr(store, "close"):
                store.close()
    print(f"\n{args.n} scores, backlog drain, load average at the end {os.getloadavg()[0]:.1f}\n")
    print("| storage | path | workers | scores/s | vs one collector | lost | stored twice |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    base = {}
    for name, path, k, res in rows:
        if path.startswith("one"):
            base[name] = res["per_s"]
        print(
            f"| {name} | {path} | {k} | {res['per_s']:,.0f} | {res['per_s'] / base[name]:.2f}x | "
            f"{res['lost']} | {res['twice']} |"
        )


if __name__ == "__main__":
    main()
