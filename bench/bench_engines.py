"""Message engines for many collector workers, side by side: N score messages through each, 1/2/4 consumers.

    .venv/bin/python bench/bench_engines.py                  # NATS JetStream, RabbitMQ, Mosquitto shared subs
    .venv/bin/python bench/bench_engines.py -n 5000 --engines nats,mosquitto   # smaller

Each engine is started on free ports (amgs/engines.py, amgs/broker.py). For every consumer count k and every
engine (interleaved, so load on the machine hits all alike):

1. the durable consumer state exists first (JetStream stream + durable pull consumer; RabbitMQ quorum queue
   bound to ``amq.topic``; k persistent MQTT 5 sessions in one ``$share/`` group on Mosquitto);
2. N score records (the real wire format, 10 devices) are published over MQTT 3.1.1 QoS 1, the way unchanged
   devices publish them, and the publish rate is recorded (all PUBACKed);
3. k consumer processes drain the backlog the way a collector worker does: take a batch (<= 500), parse each
   JSON record, acknowledge the batch (JetStream: explicit ack per message; RabbitMQ: one multiple-ack per
   batch; MQTT: PUBACK per message), and the drain is timed until all N were acknowledged. Every record's
   (device, seq) is counted: the table shows lost and duplicated records too.

No database here: this measures what the engine costs a worker. bench/bench_scaleout.py adds the database.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import platform
import sys
import tempfile
import time
from pathlib import Path

import orjson

from amgs.broker import LocalBroker
from amgs.demo import loadgen
from amgs.engines import LocalNats, LocalRabbit

BATCH = 500
SCORES = "amgs/v1/+/+/score"


def records(n: int, devices: int = 10, start: int = 1) -> list[tuple[str, bytes]]:
    per = n // devices
    return [
        loadgen.score_payload(loadgen.score_message(f"dev{d:02d}", s, cage_id=f"c{d:02d}"))
        for s in range(start, start + per)
        for d in range(devices)
    ]


def _seen(payload: bytes) -> tuple[str, int]:
    m = orjson.loads(payload)
    return m["device_id"], m["seq"]


# ------------------------------------------------------------------ consumers (one process each)


def consume_nats(url: str, total, done, out, go) -> None:
    import nats

    go.wait()

    async def run():
        nc = await nats.connect(url)
        js = nc.jetstream()
        sub = await js.pull_subscribe_bind("amgs-bench", stream="AMGS")
        seen = []
        while done.value < total:
            try:
                msgs = await sub.fetch(BATCH, timeout=0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            seen += [_seen(m.data) for m in msgs]
            for m in msgs:
                await m.ack()
            with done.get_lock():
                done.value += len(msgs)
        await nc.flush()
        await nc.close()
        out.put(seen)

    asyncio.run(run())


def consume_rabbit(url: str, total, done, out, go) -> None:
    import pika

    go.wait()
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=2 * BATCH)
    seen, batch_n, last_tag = [], 0, None
    for method, _props, body in ch.consume("amgs-bench", inactivity_timeout=0.05):
        if method is not None:
            seen.append(_seen(body))
            batch_n += 1
            last_tag = method.delivery_tag
        if last_tag is not None and (batch_n >= BATCH or method is None):
            ch.basic_ack(last_tag, multiple=True)
            with done.get_lock():
                done.value += batch_n
            batch_n, last_tag = 0, None
        if done.value >= total and method is None:
            break
    ch.cancel()
    conn.close()
    out.put(seen)


def _mqtt_consumer(port: int, client_id: str, on_message=None):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=True)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 2 * BATCH
    if on_message:
        c.on_message = on_message
    c.connect("127.0.0.1", port, clean_start=False, properties=props)
    return c


def consume_mosquitto(port: int, client_id: str, total, done, out, go) -> None:
    import collections
    import threading

    inbox: collections.deque = collections.deque()
    ready = threading.Event()

    def on_message(client, userdata, msg):
        inbox.append((msg.mid, msg.payload))
        ready.set()

    go.wait()
    c = _mqtt_consumer(port, client_id, on_message)
    c.loop_start()
    seen = []
    while done.value < total:
        ready.wait(0.05)
        ready.clear()
        batch = []
        while inbox and len(batch) < BATCH:
            batch.append(inbox.popleft())
        if not batch:
            continue
        seen += [_seen(p) for _, p in batch]
        for mid, _ in batch:
            c.ack(mid, 1)
        with done.get_lock():
            done.value += len(batch)
    c.unsubscribe(f"$share/amgs/{SCORES}")  # the next round's group starts empty
    time.sleep(0.2)
    c.disconnect()
    c.loop_stop()
    out.put(seen)


# ------------------------------------------------------------------ engines


class NatsCase:
    name = "NATS JetStream (MQTT gateway, durable pull consumer)"

    def __init__(self, workdir: Path) -> None:
        self.server = LocalNats(workdir / "nats").start()
        self.mqtt_port = self.server.mqtt_port

    def prepare(self, k: int) -> None:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

        async def run():
            nc = await nats.connect(self.server.url)
            js = nc.jetstream()
            try:
                await js.delete_stream("AMGS")
            except Exception:
                pass
            await js.add_stream(StreamConfig(name="AMGS", subjects=["amgs.v1.*.*.score"]))
            await js.add_consumer(
                "AMGS",
                ConsumerConfig(
                    durable_name="amgs-bench",
                    ack_policy=AckPolicy.EXPLICIT,
                    max_ack_pending=20_000,
                    ack_wait=60,
                ),
            )
            await nc.close()

        asyncio.run(run())

    def consumers(self, k: int, total, done, out, go) -> list[mp.Process]:
        return [
            mp.Process(target=consume_nats, args=(self.server.url, total, done, out, go)) for _ in range(k)
        ]

    def stop(self) -> None:
        self.server.stop()


class RabbitCase:
    name = "RabbitMQ (MQTT plugin, quorum queue on amq.topic, AMQP consumers)"

    def __init__(self, workdir: Path) -> None:
        self.server = LocalRabbit(workdir / "rabbit").start()
        self.mqtt_port = self.server.mqtt_port

    def prepare(self, k: int) -> None:
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(self.server.url))
        ch = conn.channel()
        ch.queue_delete("amgs-bench")
        ch.queue_declare("amgs-bench", durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_bind("amgs-bench", "amq.topic", routing_key="amgs.v1.*.*.score")
        conn.close()

    def consumers(self, k: int, total, done, out, go) -> list[mp.Process]:
        return [
            mp.Process(target=consume_rabbit, args=(self.server.url, total, done, out, go)) for _ in range(k)
        ]

    def stop(self) -> None:
        self.server.stop()


class MosquittoCase:
    name = "Mosquitto 2.0 (MQTT 5 shared subscription, persistent sessions)"

    def __init__(self, workdir: Path) -> None:
        self.server = LocalBroker(workdir=workdir / "mosquitto", extra_conf="max_inflight_messages 1000\n")
        self.server.extra_conf = ""
        self.server.start()
        self.mqtt_port = self.server.port
        self.round = 0

    def prepare(self, k: int) -> None:
        self.round += 1
        self.ids = [f"bench-{self.round}-{i}" for i in range(k)]
        for cid in self.ids:  # the k sessions exist, subscribed, before the records arrive
            c = _mqtt_consumer(self.mqtt_port, cid)
            c.loop_start()
            r = c.subscribe(f"$share/amgs/{SCORES}", qos=1)
            time.sleep(0.2)
            assert r[0] == 0
            c.disconnect()
            c.loop_stop()

    def consumers(self, k: int, total, done, out, go) -> list[mp.Process]:
        return [
            mp.Process(target=consume_mosquitto, args=(self.mqtt_port, cid, total, done, out, go))
            for cid in self.ids
        ]

    def stop(self) -> None:
        self.server.stop()


CASES = {"nats": NatsCase, "rabbitmq": RabbitCase, "mosquitto": MosquittoCase}


def run_case(case, k: int, n: int, round_no: int) -> dict:
    case.prepare(k)
    items = records(n, start=1 + round_no * n)
    t0 = time.perf_counter()
    loadgen.publish_all("127.0.0.1", case.mqtt_port, items, client_id=f"bench-pub-{round_no}")
    publish_s = time.perf_counter() - t0
    total, done, out, go = len(items), mp.Value("l", 0), mp.Queue(), mp.Event()
    procs = case.consumers(k, total, done, out, go)
    for p in procs:
        p.start()
    time.sleep(1.0)  # imports done: the timing covers connecting and draining
    t0 = time.perf_counter()
    go.set()
    seen: list = []
    deadline = time.monotonic() + 600
    results = 0
    while results < len(procs) and time.monotonic() < deadline:
        try:
            seen += out.get(timeout=1)
            results += 1
        except Exception:
            if not any(p.is_alive() for p in procs):
                break
    drain_s = time.perf_counter() - t0
    for p in procs:
        p.join(10)
        if p.is_alive():
            p.kill()
    unique = set(seen)
    return {
        "publish_per_s": total / publish_s,
        "drain_per_s": len(seen) / drain_s,
        "lost": total - len(unique),
        "dup": len(seen) - len(unique),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=20_000, help="score records per run")
    ap.add_argument("--engines", default="nats,rabbitmq,mosquitto")
    ap.add_argument("--consumers", default="1,2,4")
    args = ap.parse_args()
    print(
        f"# {platform.node()} {platform.processor() or platform.machine()}, python {sys.version.split()[0]}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="amgs-bench-engines-"))
    cases = {}
    try:
        for key in args.engines.split(","):
            t0 = time.perf_counter()
            cases[key] = CASES[key](workdir)
            print(f"# {key} started in {time.perf_counter() - t0:.1f} s", flush=True)
        rows = []
        for round_no, k in enumerate(int(x) for x in args.consumers.split(",")):
            for key, case in cases.items():
                r = run_case(case, k, args.n, round_no)
                rows.append((key, k, r))
                print(f"# {key} k={k}: {r}", flush=True)
        print(f"\n{args.n} score records, batch {BATCH}\n")
        print(
            "| engine | consumers | publish (MQTT QoS 1) msg/s | drain msg/s | drain vs 1 consumer | lost | dup |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        first = {}
        for key, k, r in rows:
            first.setdefault(key, r["drain_per_s"])
            print(
                f"| {CASES[key].name} | {k} | {r['publish_per_s']:,.0f} | {r['drain_per_s']:,.0f} | "
                f"{r['drain_per_s'] / first[key]:.2f}x | {r['lost']} | {r['dup']} |"
            )
    finally:
        for case in cases.values():
            case.stop()


if __name__ == "__main__":
    main()
