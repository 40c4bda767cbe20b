"""A site that keeps working offline, and a centre that catches up (docs/scale-out.md, "Sites and a centre").

The site: a NATS server (JetStream domain ``site-a``, MQTT listener for its devices) and its own collector
(a worker on the site's stream, its own SQLite database, the only one that publishes watermarks to the
devices). The centre: a NATS server in another network namespace (JetStream domain ``centre``), reached by
the site over a leaf-node connection on a veth pair, and a central worker whose stream *sources* the site's
stream; it has no MQTT connection at all, so it cannot publish to devices. The link is cut for a while
(``AMGS_SITE_OUTAGE_S``, default 30 s; a real outage of minutes only lengthens the wait) while devices keep
scoring: the site stores everything and confirms it to the devices, the centre stalls, then catches up.
Counted by sequence in both databases: nothing lost, nothing stored twice.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
import uuid

import pytest
from deploy_site import wait_until
from engine_helpers import (
    committed_seqs,
    ip,
    publish_scores,
    start_worker,
    stored_by_seq,
    stored_count,
    worker_toml,
)
from server_support import Watcher

from amgs.engines import LocalNats, nats_server_path


def _reason() -> str | None:
    if nats_server_path() is None:
        return "nats-server is not installed"
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "network namespaces need root and iproute2"
    probe = f"amgs-probe-{uuid.uuid4().hex[:6]}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a network namespace here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


REASON = _reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

DEVICES = [f"box-{i}" for i in range(4)]
OUTAGE_S = float(os.environ.get("AMGS_SITE_OUTAGE_S", "30"))


class CentreLink:
    """The centre in a network namespace of its own, joined to this (the site's) namespace by a veth pair."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        net = f"10.{random.randint(210, 250)}.{random.randint(0, 255)}"
        self.ns, self.here, self.there = f"amgs-centre-{tag}", f"vs{tag}", f"vc{tag}"
        self.site_ip, self.centre_ip = f"{net}.1", f"{net}.2"
        ip("netns", "add", self.ns)
        ip("link", "add", self.here, "type", "veth", "peer", "name", self.there)
        ip("link", "set", self.there, "netns", self.ns)
        ip("addr", "add", f"{self.site_ip}/30", "dev", self.here)
        ip("-n", self.ns, "addr", "add", f"{self.centre_ip}/30", "dev", self.there)
        ip("-n", self.ns, "link", "set", "lo", "up")
        ip("-n", self.ns, "link", "set", self.there, "up")
        ip("link", "set", self.here, "up")

    def down(self) -> None:
        ip("link", "set", self.here, "down")

    def up(self) -> None:
        ip("link", "set", self.here, "up")

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.here], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


def exactly_once(db, n: int) -> None:
    stored = stored_by_seq(db)
    for device in DEVICES:
        seqs = stored.get(device, [])
        assert seqs == list(range(1, n + 1)), (
            f"{db}: {device} lost {sorted(set(range(1, n + 1)) - set(seqs))[:10]}, "
            f"twice {len(seqs) - len(set(seqs))}"
        )
    assert committed_seqs(db) == {d: n for d in DEVICES}


def test_site_works_offline_and_the_centre_catches_up_without_loss_or_duplicates(tmp_path):
    link = CentreLink()
    procs = []
    centre = site = watcher = None
    try:
        centre = LocalNats(
            tmp_path / "centre-nats",
            name="centre",
            domain="centre",
            leaf_listen=True,
            mqtt=False,  # nothing at the centre can reach a device
            bind="0.0.0.0",
            netns=link.ns,
        ).start()
        site = LocalNats(
            tmp_path / "site-nats",
            name="site-a",
            domain="site-a",
            leaf_remotes=[f"nats://{link.centre_ip}:{centre.leaf_port}"],
        ).start()
        site_db, centre_db = tmp_path / "site" / "collector.db", tmp_path / "centre" / "collector.db"
        site_conf = worker_toml(
            tmp_path / "site.toml",
            state_dir=tmp_path / "site",
            nats_url=site.url,
            mqtt_port=site.mqtt_port,
            client_id="site-collector",
        )
        centre_conf = worker_toml(
            tmp_path / "centre.toml",
            state_dir=tmp_path / "centre",
            nats_url=f"nats://127.0.0.1:{centre.port}",
            mqtt_port=None,
            publish_to_devices=False,
            sources=["site-a"],
        )
        site_worker = start_worker(site_conf, tmp_path / "site.log")
        centre_worker = start_worker(centre_conf, tmp_path / "centre.log", netns=link.ns)
        procs += [site_worker, centre_worker]
        for w in procs:
            wait_until(lambda w=w: "bound to AMGS/amgs-collector" in w.tail(), 60, "worker bound", proc=w)
        watcher = Watcher(site.mqtt_port, ["amgs/v1/+/+/ack"])

        publish_scores(site.mqtt_port, DEVICES, range(1, 201), site="site-a", client_id="devices-1")
        wait_until(
            lambda: stored_count(centre_db) >= 800, 120, "centre has the first 800", proc=centre_worker
        )

        link.down()
        t_down = time.monotonic()
        publish_scores(site.mqtt_port, DEVICES, range(201, 501), site="site-a", client_id="devices-2")
        # the site goes on: stores, and confirms to its devices that they may delete
        wait_until(lambda: stored_count(site_db) >= 2000, 120, "the site stores offline", proc=site_worker)
        wait_until(
            lambda: all(
                (watcher.json(f"amgs/v1/site-a/{d}/ack") or {}).get("committed_seq") == 500 for d in DEVICES
            ),
            30,
            "site watermarks at 500 during the outage",
        )
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - t_down)))
        during = stored_count(centre_db)
        assert during == 800, f"the centre got {during - 800} scores through a cut link"

        link.up()
        t_up = time.monotonic()
        wait_until(lambda: stored_count(centre_db) >= 2000, 300, "the centre catches up", proc=centre_worker)
        caught_up_s = time.monotonic() - t_up
        time.sleep(1.0)
        exactly_once(site_db, 500)
        exactly_once(centre_db, 500)
        print(
            f"\nSITES outage {OUTAGE_S:.0f} s: centre caught up 1200 scores {caught_up_s:.1f} s after the link came back"
        )
    finally:
        if watcher is not None:
            watcher.close()
        for p in procs:
            p.stop()
        for server in (site, centre):
            if server is not None:
                server.stop()
        link.close()
