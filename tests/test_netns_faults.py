"""Faults across a real network: the collector host (Mosquitto + collector) and a cage device in two
network namespaces joined by a veth pair, the device scoring a replay with the real model over TLS.

1. The link goes down for minutes of simulated capture time while the device keeps scoring; when it
   comes back every score arrives exactly once, in order, and the collector counts no gap.
2. The collector host "reboots" (broker and collector SIGKILLed, then started again) while the device
   drains a backlog over a rate-limited link; again nothing is lost or stored twice.

Only 127.0.0.1 and 10.200.0.x inside the namespaces these tests create are used. Needs root and
iproute2 (skipped with the reason otherwise). The figures are printed (run with -s) and recorded in
docs/deployment.md.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import tomllib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from deploy_site import Proc, Site, new_site_root, wait_until, write_server_toml

from amgs.broker import free_port, mosquitto_path

AMGS = str(Path(sys.executable).with_name("amgs"))
COLLECTOR_IP, DEVICE_IP = "10.200.0.1", "10.200.0.2"
SPEED = 30  # replay pacing: 30 s of capture time per second
INTERVAL_S = 10  # one score per 10 s of capture time, as in a vivarium


def _netns_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (ip, tc) not installed"
    if mosquitto_path() is None or shutil.which("openssl") is None:
        return "needs mosquitto and openssl"
    probe = f"amgs-probe-{uuid.uuid4().hex[:6]}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a network namespace here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


REASON = _netns_reason()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.netns,
    pytest.mark.skipif(REASON is not None, reason=REASON or ""),
]


def ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    assert r.returncode == 0, f"ip {' '.join(args)}: {r.stderr}"


def tc(ns: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["tc", "-n", ns, *args], capture_output=True, text=True)


def has_qdisc(kind: str, *params: str) -> bool:
    ns = f"amgs-probe-{uuid.uuid4().hex[:6]}"
    ip("netns", "add", ns)
    try:
        ip("-n", ns, "link", "add", "pa", "type", "veth", "peer", "name", "pb")
        return tc(ns, "qdisc", "add", "dev", "pa", "root", kind, *params).returncode == 0
    finally:
        ip("netns", "del", ns)


class Link:
    """Two namespaces joined by a veth pair: collector side 10.200.0.1, device side 10.200.0.2."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.col, self.dev = f"amgs-col-{tag}", f"amgs-dev-{tag}"
        self.vcol, self.vdev = f"vc{tag}", f"vd{tag}"
        ip("netns", "add", self.col)
        ip("netns", "add", self.dev)
        ip("link", "add", self.vcol, "type", "veth", "peer", "name", self.vdev)
        ip("link", "set", self.vcol, "netns", self.col)
        ip("link", "set", self.vdev, "netns", self.dev)
        for ns, dev, addr in ((self.col, self.vcol, COLLECTOR_IP), (self.dev, self.vdev, DEVICE_IP)):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("-n", ns, "link", "set", dev, "up")

    def down(self) -> None:
        ip("-n", self.dev, "link", "set", self.vdev, "down")

    def up(self) -> None:
        ip("-n", self.dev, "link", "set", self.vdev, "up")

    def shape(self, kind: str, *params: str) -> None:
        r = tc(self.dev, "qdisc", "replace", "dev", self.vdev, "root", kind, *params)
        assert r.returncode == 0, r.stderr

    def unshape(self) -> None:
        tc(self.dev, "qdisc", "del", "dev", self.vdev, "root")

    def close(self) -> None:
        for ns in (self.col, self.dev):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@dataclass
class Rig:
    link: Link
    site: Site
    collector: Proc
    device: Proc
    db: Path
    outbox: Path
    root: Path
    n_frames: int

    def start_collector(self) -> None:
        self.site.start()
        wait_until(lambda: "running" in self.site.log.read_text(), 30, "broker up in its namespace")
        self.collector.start()

    def kill_collector_host(self) -> None:
        self.collector.stop(kill=True)
        self.site.stop(kill=True)

    # --- what the collector has
    def stored(self) -> tuple[int, int]:
        """(score rows, distinct msg_ids) of the device."""
        if not self.db.exists():
            return (0, 0)
        return _one(
            self.db, "SELECT count(*), count(DISTINCT msg_id) FROM scores WHERE device_id = 'cage-dev'"
        )

    def device_row(self) -> dict:
        con = sqlite3.connect(self.db)
        con.row_factory = sqlite3.Row
        try:
            row = con.execute("SELECT * FROM devices WHERE device_id = 'cage-dev'").fetchone()
            return dict(row) if row else {}
        finally:
            con.close()

    # --- what the device has
    def last_seq(self) -> int:
        if not self.outbox.exists():
            return 0
        row = _one(self.outbox, "SELECT value FROM meta WHERE key = 'last_seq'")
        return int(row[0]) if row else 0

    def queued(self) -> int:
        return _one(self.outbox, "SELECT count(*) FROM outbox")[0] if self.outbox.exists() else 0

    def check_exactly_once(self) -> dict:
        """Every score the device made is stored once, none is missing or declared lost; returns figures
        including the order problems (stored out of order, gaps opened and later filled)."""
        last = self.last_seq()
        con = sqlite3.connect(self.db)
        try:
            where = "WHERE device_id = 'cage-dev'"
            seqs = [r[0] for r in con.execute(f"SELECT seq FROM scores {where} ORDER BY rowid")]
            distinct = con.execute(f"SELECT count(DISTINCT msg_id) FROM scores {where}").fetchone()[0]
        finally:
            con.close()
        dev = self.device_row()
        figures = {
            "scores": last,
            "stored": len(seqs),
            "lost": len(set(range(1, last + 1)) - set(seqs)),
            "stored_twice": len(seqs) - distinct,
            "redeliveries_ignored": dev.get("duplicates"),
            "order_inversions": sum(1 for a, b in zip(seqs, seqs[1:], strict=False) if b < a),
            "gaps": dev.get("gaps_total"),
            "missing_open": dev.get("missing_open"),
            "lost_declared": dev.get("lost_total"),
        }
        print(f"\nNETNS figures: {json.dumps(figures)}")
        assert last >= self.n_frames * 0.5, f"the device scored only {last} of {self.n_frames} frames"
        assert sorted(seqs) == list(range(1, last + 1)), figures
        assert figures["stored_twice"] == 0, figures
        assert (dev["missing_open"], dev["lost_total"]) == (0, 0), figures
        assert dev["committed_seq"] == last, figures
        return figures


def _one(db: Path, sql: str):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql).fetchone()
    finally:
        con.close()


def write_frames(folder: Path, n: int, faces: Path) -> None:
    """``n`` frames named by capture time, INTERVAL_S apart, cycling through the synthetic faces."""
    folder.mkdir(parents=True)
    pool = sorted(faces.rglob("*.jpg"))
    start = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
    for i in range(n):
        t = start + timedelta(seconds=INTERVAL_S * i)
        shutil.copyfile(pool[i % len(pool)], folder / f"{t:%Y%m%d_%H%M%S}.jpg")


@pytest.fixture
def rig_factory(synth_set):
    made: list[Rig] = []

    def make(n_frames: int, realtime: bool) -> Rig:
        from amgs.deploy.provision import to_toml

        root = new_site_root("amgs-netns-")
        link = Link()
        site = Site(root, site="lab1", host=COLLECTOR_IP, san=(), netns=link.col)
        state = root / "collector"
        write_server_toml(site, state, free_port())
        frames = root / "frames"
        write_frames(frames, n_frames, synth_set)
        assert site.provision("collector").exit_code == 0
        bundle = site.state / "bundles" / "cage-dev"
        r = site.provision(
            "device", "cage-dev", "--cage", "C1", "--source", f"folder:{frames}", "--device-etc", str(bundle)
        )
        assert r.exit_code == 0, r.output
        cfg = tomllib.loads((bundle / "device.toml").read_text())
        cfg["device"]["state_dir"] = str(root / "device-state")
        cfg["sources"][0].update(realtime=realtime, speed=SPEED)
        cfg["schedule"] = {"interval_s": INTERVAL_S, "burst_frames": 1}
        cfg["mqtt"].update(keepalive_s=5, reconnect_min_s=0.5, reconnect_max_s=2)
        cfg["delivery"] = {"resend_after_s": 5}
        cfg["storage"] = {"keep_crops_h": 0}
        cfg["agent"] = {"exit_when_done": True, "done_timeout_s": 300}
        cfg["model"] = {"allow_synthetic": True}  # the shipped model is synthetic-trained
        (bundle / "device.toml").write_text(to_toml(cfg))
        collector = Proc(
            [AMGS, "server", "run", "--config", str(site.amgs_etc / "server.toml")],
            root / "collector.log",
            netns=link.col,
        )
        device = Proc(
            [AMGS, "-v", "device", "run", "--config", str(bundle / "device.toml")],
            root / "device.log",
            netns=link.dev,
        )
        rig = Rig(
            link,
            site,
            collector,
            device,
            state / "collector.db",
            root / "device-state" / "outbox.sqlite3",
            root,
            n_frames,
        )
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.device.stop(kill=True)
        rig.collector.stop(kill=True)
        rig.site.stop(kill=True)
        rig.link.close()
        if os.environ.get("AMGS_KEEP_NETNS_LOGS"):
            print(f"logs kept in {rig.root}")
        else:
            shutil.rmtree(rig.root, ignore_errors=True)


def report(name: str, figures: dict) -> None:
    print(f"\nNETNS {name}: {json.dumps(figures)}")


NETEM = has_qdisc("netem", "loss", "100%") if REASON is None else False


@pytest.mark.parametrize("cut", ["link-down", "netem-loss"])
def test_link_outage_while_scoring(rig_factory, cut):
    if cut == "netem-loss" and not NETEM:
        pytest.skip("this kernel has no netem qdisc (sch_netem): the link-down variant covers the outage")
    outage_s = 20.0
    rig = rig_factory(n_frames=150, realtime=True)  # 150 x 10 s = 25 min of capture time
    rig.start_collector()
    rig.device.start()
    wait_until(lambda: rig.stored()[0] >= 10, 120, "first scores at the collector", proc=rig.device)
    stored_at_cut, seq_at_cut = rig.stored()[0], rig.last_seq()
    t_cut = time.monotonic()
    rig.link.down() if cut == "link-down" else rig.link.shape("netem", "loss", "100%", "delay", "200ms")
    buffered = 0
    while time.monotonic() - t_cut < outage_s:
        buffered = max(buffered, rig.queued())
        time.sleep(0.5)
    assert rig.device.alive, rig.device.tail()
    seq_at_up = rig.last_seq()
    stored_during = rig.stored()[0] - stored_at_cut
    t_up = time.monotonic()
    rig.link.up() if cut == "link-down" else rig.link.unshape()
    wait_until(lambda: (rig.device_row().get("committed_seq") or 0) >= seq_at_up, 120, "backlog drained", 0.1)
    drain_s = time.monotonic() - t_up
    wait_until(lambda: not rig.device.alive, 180, "device finished the replay and its deliveries")
    assert rig.device.stop() == 0, rig.device.tail()
    figures = rig.check_exactly_once()
    figures.update(
        cut=cut,
        outage_wall_s=round(outage_s, 1),
        outage_capture_time_min=round(outage_s * SPEED / 60, 1),
        scored_during_outage=seq_at_up - seq_at_cut,
        max_buffered_on_device=buffered,
        stored_during_outage=stored_during,
        drain_s=round(drain_s, 2),
    )
    report("outage", figures)
    assert figures["scored_during_outage"] >= 5, "the device should keep scoring while the link is down"
    assert (figures["order_inversions"], figures["gaps"]) == (0, 0), figures


def test_collector_host_reboot_during_backlog_drain(rig_factory):
    rig = rig_factory(n_frames=240, realtime=False)
    rig.start_collector()
    rig.link.down()
    rig.device.start()

    # The backlog builds up on the device while the collector is unreachable.
    def backlog_complete():
        seq = rig.last_seq()
        time.sleep(1.0)
        return seq >= rig.n_frames * 0.5 and seq == rig.last_seq()

    wait_until(backlog_complete, 240, "device backlog scored", proc=rig.device)
    backlog = rig.queued()
    # A slow link (250 kbit/s) so the drain takes long enough to interrupt it.
    rig.link.shape("tbf", "rate", "250kbit", "burst", "4kb", "latency", "500ms")
    t_up = time.monotonic()
    rig.link.up()
    wait_until(lambda: rig.stored()[0] >= 40, 120, "drain under way", 0.05, proc=rig.device)
    stored_at_kill = rig.stored()[0]
    rig.kill_collector_host()
    t_killed = time.monotonic()
    time.sleep(2.0)
    rig.start_collector()
    wait_until(
        lambda: (rig.device_row().get("committed_seq") or 0) >= rig.last_seq(),
        180,
        "backlog drained after restart",
        0.1,
    )
    drain_s = time.monotonic() - t_up
    after_restart_s = time.monotonic() - t_killed
    wait_until(lambda: not rig.device.alive, 120, "device finished its deliveries")
    assert rig.device.stop() == 0, rig.device.tail()
    figures = rig.check_exactly_once()
    figures.update(
        backlog=backlog,
        link="250 kbit/s tbf",
        stored_when_killed=stored_at_kill,
        drain_s_total=round(drain_s, 1),
        drain_s_after_kill=round(after_restart_s, 1),
    )
    report("reboot", figures)
    assert stored_at_kill < backlog, "the kill must land during the drain"
    # In order, no transient gap: after a reconnect the device holds its scores until a live watermark shows
    # the collector subscribed, and a fresh paho client per connection re-sends nothing of the old one ahead
    # of the older records (paho re-published its in-flight messages on reconnect: 2 of 4 runs had a gap).
    assert (figures["order_inversions"], figures["gaps"]) == (0, 0), figures


def test_only_the_tls_listener_is_reachable_from_the_network():
    """From the device's namespace the broker answers on TLS only; the collector's plain port is loopback."""
    root = new_site_root("amgs-netns-")
    link = Link()
    site = Site(root, site="lab1", host=COLLECTOR_IP, san=(), netns=link.col)
    try:
        assert site.provision("collector").exit_code == 0
        site.start()
        wait_until(lambda: "running" in site.log.read_text(), 30, "broker up in its namespace")
        probe = (
            "import socket, sys\n"
            "for port in sys.argv[2:]:\n"
            "    try:\n"
            "        socket.create_connection((sys.argv[1], int(port)), timeout=3).close(); print(port, 'open')\n"
            "    except OSError as e:\n"
            "        print(port, type(e).__name__)\n"
        )
        out = subprocess.run(
            ["ip", "netns", "exec", link.dev, sys.executable, "-c", probe, COLLECTOR_IP,
             str(site.plain_port), str(site.tls_port)],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout.split("\n")  # fmt: skip
        assert out[0] == f"{site.plain_port} ConnectionRefusedError", out
        assert out[1] == f"{site.tls_port} open", out
    finally:
        site.stop(kill=True)
        link.close()
        shutil.rmtree(root, ignore_errors=True)
