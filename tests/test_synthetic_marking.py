"""Scores from a synthetic-trained model are marked end to end: stored, bannered, and said in alerts."""

from __future__ import annotations

import csv
import io
import json
import time

from amgs.contract import decode, encode
from amgs.server.alerts.channels import email_text
from amgs.server.alerts.service import AlertRunner
from amgs.server.config import parse_config
from amgs.server.http.app import create_app
from amgs.server.ingest.incoming import Incoming
from amgs.server.ingest.store import Ingestor
from amgs.server.query.metadata import save
from amgs.server.storage.db import open_database
from tests.alert_helpers import SITE, score
from tests.web_helpers import Served, http


def _synthetic(incoming: Incoming, synthetic: bool) -> Incoming:
    msg = decode(incoming.payload)
    msg["model"] = {**msg["model"], "synthetic": synthetic}
    return Incoming(incoming.topic, encode(msg), received_at=incoming.received_at)


def test_synthetic_scores_are_stored_marked_bannered_and_alerts_say_so(tmp_path):
    config = parse_config(
        {
            "storage": {"state_dir": str(tmp_path / "state")},
            "notify": {"mqtt": {"enabled": False}},
            "alerts": {"pain": {"window_min": 60, "min_images": 10}},
        }
    )
    db = open_database(config)
    conn = db.local().conn
    now = time.time()
    for cage in ("C1", "C2"):
        save(conn, "cages", {"cage_id": cage, "site_id": SITE})
    served = Served(create_app(config, db))
    try:
        # a lab-trained model's scores (or a device older than the flag): no banner
        Ingestor(db, config).process([_synthetic(score("dev2", "C2", 1, now - 60, 0.1), False)])
        status, _, page = http("GET", f"{served.base}/")
        assert status == 200 and "synthetic-banner" not in page
        batch = [_synthetic(score("dev1", "C1", i + 1, now - 3000 + i * 200, 0.9), True) for i in range(15)]
        Ingestor(db, config).process(batch)
        flags = dict(conn.execute("SELECT device_id, max(model_synthetic) FROM scores GROUP BY device_id"))
        assert flags == {"dev1": 1, "dev2": 0}
        for path in ("/", "/cages/C1", "/alerts", "/devices", "/groups"):
            status, _, page = http("GET", f"{served.base}{path}")
            assert status == 200 and 'id="synthetic-banner"' in page and "SYNTHETIC MODEL" in page, path
        # the raw-score export says which scores came from the synthetic model, row by row
        status, _, text = http("GET", f"{served.base}/api/export/scores.csv?start={now - 7200:.0f}")
        exported = list(csv.DictReader(io.StringIO(text)))
        assert status == 200 and {(r["device_id"], r["model_synthetic"]) for r in exported} == {
            ("dev1", "1"),
            ("dev2", "0"),
        }
    finally:
        served.stop()
    runner = AlertRunner(db.local, config.alerts, config.notify, mqtt=None)
    opened = [c.alert for c in runner.evaluate_once() if c.kind == "opened" and c.alert["cage_id"] == "C1"]
    assert [a["rule"] for a in opened] == ["sustained_pain"]
    assert opened[0]["message"].startswith("SYNTHETIC MODEL: sustained pain in cage C1")
    subject, body = email_text("opened", opened[0])
    assert subject.startswith("SYNTHETIC MODEL") and "trained on synthetic faces only" in body
    assert json.dumps(opened[0])  # the alert as the channels send it
