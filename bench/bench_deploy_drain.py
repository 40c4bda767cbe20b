"""How fast the real collector drains a day of one device's scores (8,640) that the shipped broker queued
while the collector was down, for Mosquitto's ``max_inflight_messages`` at the shipped value and at
others, measured side by side in one run. The collector acknowledges a message only after committing
it, so the broker's in-flight limit caps each commit batch.

    .venv/bin/python bench/bench_deploy_drain.py [--scores 8640] [--inflight 20,100,1000]

Needs mosquitto and openssl; runs everything on 127.0.0.1 (TLS for the device, loopback for the collector).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sqlite3
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from deploy_site import (  # noqa: E402
    Client,
    Proc,
    Site,
    collector_subscribed,
    new_site_root,
    score_message,
    wait_until,
    write_server_toml,
)

from amgs import contract  # noqa: E402
from amgs.broker import free_port  # noqa: E402

AMGS = str(Path(sys.executable).with_name("amgs"))


def stored(db: Path) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT count(*) FROM scores").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def one_run(n: int, inflight: int) -> dict:
    root = new_site_root("amgs-bench-drain-")
    site = Site(root, site="lab1")
    try:
        conf = root / "conf.d" / "amgs.conf"
        text, count = re.subn(
            r"(?m)^max_inflight_messages \d+$", f"max_inflight_messages {inflight}", conf.read_text()
        )
        assert count == 1, "the shipped config has no max_inflight_messages line"
        conf.write_text(text)
        http_port = free_port()
        write_server_toml(site, root / "collector", http_port)
        assert site.provision("collector").exit_code == 0
        assert site.provision("device", "box-01", "--cage", "C1").exit_code == 0
        site.start()
        server = [AMGS, "server", "run", "--config", str(site.amgs_etc / "server.toml")]
        collector = Proc(server, root / "collector.log").start()
        wait_until(
            lambda: collector_subscribed(f"http://127.0.0.1:{http_port}"),
            60,
            "collector subscribed",
            proc=collector,
        )
        collector.stop()  # its persistent session stays on the broker

        dev = Client(site.tls_port, "box-01", site.password("box-01"), ca=site.ca)
        assert not dev.connect().is_failure
        topic = contract.score_topic("lab1", "box-01")
        t0 = time.perf_counter()
        for seq in range(1, n + 1):
            dev.c.publish(topic, contract.encode(score_message("box-01", "lab1", "C1", seq)), qos=1)
        for _ in range(n):
            dev.puback_q.get(timeout=120)
        publish_s = time.perf_counter() - t0
        dev.close()

        db = root / "collector" / "collector.db"
        collector = Proc(server, root / "collector2.log")
        t0 = time.perf_counter()
        collector.start()
        wait_until(lambda: stored(db) >= n, 600, f"{n} scores stored", 0.05, proc=collector)
        drain_s = time.perf_counter() - t0
        collector.stop()
        return {"inflight": inflight, "publish_s": publish_s, "drain_s": drain_s, "rate": n / drain_s}
    finally:
        site.stop(kill=True)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scores", type=int, default=8640)
    ap.add_argument("--inflight", default="20,100,1000", help="max_inflight_messages values to compare")
    args = ap.parse_args()
    results = [one_run(args.scores, int(v)) for v in args.inflight.split(",")]
    base = results[0]["drain_s"]
    print(f"{args.scores} queued scores, real collector (manual ack after commit), collector start included")
    print(
        f"{'max_inflight_messages':>22} {'queue fill s':>13} {'drain s':>8} {'scores/s':>9} {'vs first':>9}"
    )
    for r in results:
        print(
            f"{r['inflight']:>22} {r['publish_s']:>13.1f} {r['drain_s']:>8.1f} {r['rate']:>9.0f} "
            f"{base / r['drain_s']:>8.2f}x"
        )


if __name__ == "__main__":
    main()
