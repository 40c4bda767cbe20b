"""Alert life cycle on a real collector database with real receivers: fire, de-duplicate, re-notify, escalate,
acknowledge, auto-resolve, and delivery failure (receiver down -> retried, not lost).

SQLite here; tests/test_pg_alerts.py collects these tests again on PostgreSQL (it replaces ``server_config``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from amgs.contract import validate
from amgs.server.alerts.channels import build_channels
from amgs.server.alerts.config import AlertsConfig, NotifyConfig
from amgs.server.alerts.engine import AlertEngine
from amgs.server.alerts.outbox import CLAIM_S, Deliverer
from amgs.server.alerts.rules import Condition
from amgs.server.alerts.store import alert_events, rows
from amgs.server.storage.db import open_database
from tests.alert_helpers import SmtpReceiver, WebhookReceiver
from tests.server_support import server_config


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw) -> None:
        self.now += timedelta(**kw)


PAIN = Condition(
    "sustained_pain", "lab1", "C01", "alert", "sustained pain in cage C01", 0.6, 0.5, "M1", "dev1"
)


@pytest.fixture
def receivers():
    hook, smtp = WebhookReceiver().start(), SmtpReceiver().start()
    yield hook, smtp
    hook.stop()
    smtp.stop()


def count_alerts(db) -> int:
    return db.execute("SELECT count(*) FROM alerts").fetchone()[0]


def first_alert_id(db) -> str:
    return rows(db, "SELECT alert_id FROM alerts ORDER BY opened_at")[0]["alert_id"]


def make(tmp_path, hook, smtp, **alerts):
    # the alert tables come from the collector's migrations; the engine gets the collector's connection
    db = open_database(server_config(tmp_path)).local()
    notify = NotifyConfig(
        mqtt={"enabled": False},
        webhooks=[{"url": hook.url, "min_severity": "warning"}],
        email={"host": "127.0.0.1", "port": smtp.port, "to": ["vet@example.org"], "min_severity": "alert"},
        retry_initial_s=10,
    )
    clock = Clock()
    engine = AlertEngine(
        db, AlertsConfig(renotify_after_min=60, resolve_after_min=10, **alerts), notify, clock, clock
    )
    deliverer = Deliverer(db, notify, build_channels(notify, None), clock)
    return engine, deliverer, clock


def test_fire_dedupe_renotify_ack_resolve(tmp_path, receivers):
    hook, smtp = receivers
    engine, deliverer, clock = make(tmp_path, hook, smtp)

    assert [c.kind for c in engine.apply([PAIN])] == ["opened"]
    assert deliverer.deliver_due() == (2, 0)
    assert hook.received[0]["event"] == "opened"
    validate(hook.received[0]["alert"], "amgs.alert/1")
    assert smtp.messages[0]["Subject"] == "[aMGS] ALERT cage C01 - sustained pain"
    assert "sustained pain in cage C01" in smtp.messages[0].get_payload()

    # Same condition 30 min later: one alert, no new notification (de-duplicated).
    clock.advance(minutes=30)
    assert [c.kind for c in engine.apply([PAIN])] == []
    assert deliverer.deliver_due() == (0, 0)
    assert count_alerts(engine.db) == 1

    # Still open, unacknowledged, 60 min after the last notification: re-notified.
    clock.advance(minutes=31)
    assert [c.kind for c in engine.apply([PAIN])] == ["renotified"]
    assert deliverer.deliver_due() == (2, 0)
    assert smtp.messages[-1]["Subject"].startswith("[aMGS] STILL OPEN: ALERT cage C01")

    # Acknowledged: no more reminders while it holds; the webhook hears about the acknowledgement.
    alert_id = first_alert_id(engine.db)
    row = engine.acknowledge(alert_id, "alice", "gave buprenorphine 0.1 mg/kg")
    assert (row["state"], row["acknowledged_by"], row["ack_comment"]) == (
        "acknowledged",
        "alice",
        "gave buprenorphine 0.1 mg/kg",
    )
    assert deliverer.deliver_due() == (1, 0)
    assert hook.received[-1]["event"] == "acknowledged"
    clock.advance(hours=3)
    assert engine.apply([PAIN]) == []
    assert deliverer.deliver_due() == (0, 0)

    # Condition clears: resolved only after staying clear for resolve_after_min.
    clock.advance(minutes=5)
    assert engine.apply([]) == []
    clock.advance(minutes=6)
    assert [c.kind for c in engine.apply([])] == ["resolved"]
    assert deliverer.deliver_due() == (2, 0)
    assert hook.received[-1]["alert"]["state"] == "resolved"
    assert smtp.messages[-1]["Subject"].startswith("[aMGS] resolved: ALERT cage C01")
    kinds = [e["kind"] for e in alert_events(engine.db, alert_id)]
    assert kinds == ["opened", "renotified", "acknowledged", "resolved"]

    # A new episode is a new alert.
    clock.advance(minutes=1)
    assert [c.kind for c in engine.apply([PAIN])] == ["opened"]
    assert count_alerts(engine.db) == 2


def test_escalation_reopens_acknowledged_alert(tmp_path, receivers):
    hook, smtp = receivers
    engine, deliverer, clock = make(tmp_path, hook, smtp)
    engine.apply([PAIN])
    alert_id = first_alert_id(engine.db)
    engine.acknowledge(alert_id, "bob")
    deliverer.deliver_due()
    clock.advance(minutes=5)
    worse = Condition(**{**PAIN.__dict__, "severity": "humane_endpoint", "message": "HUMANE ENDPOINT level"})
    assert [c.kind for c in engine.apply([worse])] == ["escalated"]
    row = engine.get(alert_id)
    assert (row["state"], row["severity"]) == ("open", "humane_endpoint")
    deliverer.deliver_due()
    assert smtp.messages[-1]["Subject"] == "[aMGS] ESCALATED: HUMANE ENDPOINT cage C01 - sustained pain"


def test_receiver_down_retried_not_lost(tmp_path, receivers):
    hook, smtp = receivers
    engine, deliverer, clock = make(tmp_path, hook, smtp)
    hook.stop()
    smtp.stop()
    engine.apply([PAIN])
    assert deliverer.deliver_due() == (0, 2)
    pending = deliverer.pending()
    assert len(pending) == 2 and all(p["attempts"] == 1 for p in pending)
    assert any("unreachable" in p["last_error"] for p in pending)
    assert any("SMTP relay" in p["last_error"] for p in pending)

    # Not due yet: nothing is attempted; then it fails again and backs off further.
    clock.advance(seconds=5)
    assert deliverer.deliver_due() == (0, 0)
    clock.advance(seconds=6)
    assert deliverer.deliver_due() == (0, 2)
    assert {p["attempts"] for p in deliverer.pending()} == {2}
    assert deliverer.backoff(2) == timedelta(seconds=20)

    # The webhook answers 500: still a failure, still kept.
    hook.start()
    hook.status = 500
    clock.advance(seconds=21)
    assert deliverer.deliver_due() == (0, 2)
    assert any("HTTP 500" in p["last_error"] for p in deliverer.pending())

    # Receivers back: everything queued arrives, in order, exactly once.
    hook.status = 200
    smtp2 = SmtpReceiver(smtp.port).start()
    try:
        engine.apply([])  # nothing new while clear for < resolve_after_min
        clock.advance(minutes=1)
        assert deliverer.deliver_due() == (2, 0)
        assert deliverer.pending() == []
        assert [r["event"] for r in hook.received] == ["opened"]
        assert len(smtp2.messages) == 1
    finally:
        smtp2.stop()


def test_order_per_target_is_kept_after_a_failure(tmp_path, receivers):
    hook, smtp = receivers
    engine, deliverer, clock = make(tmp_path, hook, smtp)
    hook.stop()
    engine.apply([PAIN])
    deliverer.deliver_due()
    alert_id = first_alert_id(engine.db)
    engine.acknowledge(alert_id, "carol", "seen")
    hook.start()
    # The acknowledgement is due now but the earlier "opened" is not: neither goes, order is kept.
    assert deliverer.deliver_due() == (0, 0)
    clock.advance(seconds=11)
    assert deliverer.deliver_due() == (2, 0)
    assert [r["event"] for r in hook.received] == ["opened", "acknowledged"]
    assert json.loads(json.dumps(hook.received[1]))["alert"]["state"] == "acknowledged"


def test_too_few_images_neither_updates_nor_resolves(tmp_path, receivers):
    hook, smtp = receivers
    engine, deliverer, clock = make(tmp_path, hook, smtp)
    engine.apply([PAIN])
    clock.advance(hours=2)
    assert engine.apply([], unknown={PAIN.key}) == []
    assert rows(engine.db, "SELECT state FROM alerts")[0]["state"] == "open"
    assert [c.kind for c in engine.apply([])] == ["resolved"]


def test_a_claim_left_by_a_dead_worker_is_taken_over_after_the_lease(tmp_path, receivers):
    """Workers sharing a database claim a row before sending it. One that claimed the webhook row and died
    before sending: the row waits out the lease (CLAIM_S), then another worker sends it; the e-mail goes
    at once (another target)."""
    hook, smtp = receivers
    engine, deliverer, clock = make(tmp_path, hook, smtp)
    engine.apply([PAIN])
    dead = Deliverer(engine.db, deliverer.notify, {}, clock)
    first = dead.pending()[0]
    assert first["channel"] == "webhook:0"
    assert dead._claim(first, clock()) and not dead._claim(first, clock())  # claimed once, then it "dies"
    assert deliverer.deliver_due() == (1, 0) and len(smtp.messages) == 1 and hook.received == []
    clock.advance(seconds=CLAIM_S - 1)
    assert deliverer.deliver_due() == (0, 0)
    clock.advance(seconds=1)
    assert deliverer.deliver_due() == (1, 0)
    assert [r["event"] for r in hook.received] == ["opened"] and deliverer.pending() == []
