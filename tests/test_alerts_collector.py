"""The alert job on a real collector database filled through the collector's own ingest (no MQTT):
pain from stored scores, the cage's own baseline, device errors and silence, no usable faces.

SQLite here; tests/test_pg_alerts.py collects these tests again on PostgreSQL (it replaces ``server_config``
and ``Ingestor``)."""

from __future__ import annotations

import time

from amgs.server.alerts.service import AlertRunner
from amgs.server.ingest.store import Ingestor
from amgs.server.query.metadata import save
from amgs.server.storage.db import open_database
from tests.alert_helpers import SITE, at, score, status
from tests.server_support import server_config


def test_alert_job_on_ingested_data(tmp_path):
    config = server_config(
        tmp_path,
        notify={"mqtt": {"enabled": False}},
        alerts={
            "pain": {"window_min": 60, "min_images": 10},
            "baseline_rise": {
                "window_min": 60,
                "min_images": 10,
                "baseline_hours": 4,
                "baseline_min_images": 10,
            },
            "no_faces": {"after_min": 90},
        },
    )
    db = open_database(config)
    store = Ingestor(db, config)
    now = time.time()
    surgery = now - 2 * 3600
    conn = db.local().conn
    save(conn, "cages", {"cage_id": "C1", "site_id": SITE})
    save(conn, "events", {"kind": "surgery", "at": at(surgery), "cage_id": "C1"})
    batch = [
        status("dev1", now - 6 * 3600, cages=["C1", "C2"]),
        status("dev2", now - 3600, errors=["camera /dev/video0: no frames"], cages=["C3"]),
    ]
    seq = 0
    for i in range(48):  # C1: 4 h of baseline at p = 0.2, then 2 h at p = 0.8, one image per 5 min
        t = surgery - 4 * 3600 + i * 300
        seq += 1
        batch.append(score("dev1", "C1", seq, t, 0.2))
    for i in range(24):
        seq += 1
        batch.append(score("dev1", "C1", seq, surgery + 150 + i * 300, 0.8))
    for i in range(12):  # C2: scores stopped 3 h ago while its device stays online
        seq += 1
        batch.append(score("dev1", "C2", seq, now - 4 * 3600 + i * 300, 0.1))
    batch.append(status("dev1", now - 10, cages=["C1", "C2"]))
    store.process(batch)

    runner = AlertRunner(db.local, config.alerts, config.notify, mqtt=None)
    changes = runner.evaluate_once()
    opened = {(c.alert["rule"], c.alert["cage_id"]): c.alert for c in changes if c.kind == "opened"}
    assert set(opened) == {
        ("sustained_pain", "C1"),
        ("baseline_rise", "C1"),
        ("no_faces", "C2"),
        ("device_error", "C3"),
    }
    assert opened[("sustained_pain", "C1")]["value"] == 1.0
    assert abs(opened[("baseline_rise", "C1")]["value"] - 0.6) < 1e-6  # 0.8 now vs its own 0.2 baseline
    assert "camera /dev/video0: no frames" in opened[("device_error", "C3")]["message"]
    assert opened[("sustained_pain", "C1")]["device_id"] == "dev1"
    assert runner.evaluate_once() == []  # de-duplicated on the next pass

    # dev2 says offline 20 min ago (newer than its last status): past the offline rule's 15 min, its cage alerts.
    store.process([status("dev2", now - 20 * 60, state="offline", cages=["C3"])])
    kinds = {(c.kind, c.alert["rule"], c.alert["cage_id"]) for c in runner.evaluate_once()}
    assert ("opened", "device_offline", "C3") in kinds and ("resolved", "device_error", "C3") not in kinds


def test_a_revoked_device_raises_no_offline_alert(tmp_path):
    """`amgs provision revoke` marks the device revoked: its silence is intended, not an outage."""
    config = server_config(tmp_path, notify={"mqtt": {"enabled": False}})
    db = open_database(config)
    store = Ingestor(db, config)
    now = time.time()
    for cage in ("C1", "C2"):
        save(db.local().conn, "cages", {"cage_id": cage, "site_id": SITE})
    store.process([status(d, now - 3 * 3600, cages=[c]) for d, c in (("dev1", "C1"), ("dev2", "C2"))])
    store.process(
        [status(d, now - 20 * 60, "offline", cages=[c]) for d, c in (("dev1", "C1"), ("dev2", "C2"))]
    )
    db.local().conn.execute(
        "UPDATE devices SET state = 'revoked', registered = 0, last_seen = ? WHERE device_id = 'dev2'",
        [now - 20 * 60],  # silent since: would count as offline
    )
    runner = AlertRunner(db.local, config.alerts, config.notify, mqtt=None)
    opened = {(c.alert["rule"], c.alert["cage_id"]) for c in runner.evaluate_once() if c.kind == "opened"}
    assert ("device_offline", "C1") in opened and ("device_offline", "C2") not in opened
