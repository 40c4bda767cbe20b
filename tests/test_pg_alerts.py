"""The alert tests again on PostgreSQL (storage.url), unchanged: tests/test_alerts_engine.py (life cycle with
real receivers), tests/test_alerts_collector.py (the alert job over ingested data) and tests/test_alerts_mqtt.py
(retained cage state, broker outage).

An autouse fixture points each module's ``server_config`` at a fresh PostgreSQL database and the collector
test's ``Ingestor`` at the PostgreSQL ingestor. The tests below it are PostgreSQL's own: several collector
workers sharing one database (one alert per ``dedupe_key``, each notification delivered once).
"""

from __future__ import annotations

import threading

import pytest
import server_support
import test_alerts_collector
import test_alerts_engine
import test_alerts_mqtt
from pg_support import pg_databases  # noqa: F401  (fixture)
from test_alerts_collector import *  # noqa: F403  (the tests, collected again)
from test_alerts_engine import *  # noqa: F403
from test_alerts_mqtt import *  # noqa: F403

from amgs.server.alerts.config import AlertsConfig, NotifyConfig
from amgs.server.alerts.engine import AlertEngine
from amgs.server.alerts.outbox import Deliverer
from amgs.server.alerts.rules import Condition
from amgs.server.ingest.pg_ingest import PgIngestor
from amgs.server.storage.db import open_database
from amgs.server.storage.pg import is_postgres


@pytest.fixture(autouse=True)
def on_postgres(monkeypatch, pg_databases):  # noqa: F811
    def config(tmp_path, broker=None, **sections):
        sections.setdefault("storage", {})["url"] = pg_databases.create()
        return server_support.server_config(tmp_path, broker, **sections)

    real = test_alerts_collector.Ingestor

    def ingestor(db, config):
        return PgIngestor(db, config) if is_postgres(db) else real(db, config)

    for module in (test_alerts_engine, test_alerts_collector, test_alerts_mqtt):
        monkeypatch.setattr(module, "server_config", config)
    monkeypatch.setattr(test_alerts_collector, "Ingestor", ingestor)


def _conditions(n: int) -> list[Condition]:
    return [
        Condition("sustained_pain", "lab1", f"C{i:02d}", "alert", f"pain in C{i:02d}", 0.7, 0.5, None, "dev1")
        for i in range(n)
    ]


class Recording:
    """A channel that records what it sends, into a log shared by the workers (in the order sent)."""

    name = "webhook"

    def __init__(self, worker: int, log: list, lock: threading.Lock) -> None:
        self.worker, self.log, self.lock = worker, log, lock

    def send(self, target, payload) -> None:
        with self.lock:
            self.log.append((payload["alert"]["cage_id"], payload["event"], self.worker))


def _run_together(*fns) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(len(fns))

    def run(fn):
        try:
            start.wait()
            fn()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(fn,)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_two_workers_evaluating_at_once_open_one_alert_per_key(tmp_path):
    """Two collector workers (each its own engine and connection) apply the same conditions at the same
    moment, several times: one alert per cage, opened once, one 'opened' notification per cage."""
    db = open_database(test_alerts_engine.server_config(tmp_path))
    notify = NotifyConfig(mqtt={"enabled": False}, webhooks=[{"url": "http://127.0.0.1:9/hook"}])
    conds = _conditions(20)
    engines = [AlertEngine(db.connect(), AlertsConfig(), notify) for _ in range(2)]
    for _ in range(3):
        _run_together(*(lambda e=e: e.apply(conds) for e in engines))
    check = db.connect()
    assert check.execute("SELECT count(*), count(DISTINCT dedupe_key) FROM alerts").fetchone() == (20, 20)
    assert check.execute("SELECT count(*) FROM alert_outbox").fetchone() == (20,)
    assert check.execute("SELECT count(*) FROM alert_events WHERE kind = 'opened'").fetchone() == (20,)


def test_two_workers_delivering_at_once_send_each_notification_once(tmp_path):
    """Two workers run the delivery pass over the same outbox at once: every row sent exactly once, and
    each cage's notifications (one target per cage here) in the order they were queued."""
    db = open_database(test_alerts_engine.server_config(tmp_path))
    notify = NotifyConfig(mqtt={"enabled": False}, webhooks=[{"url": "http://127.0.0.1:9/hook"}])
    engine = AlertEngine(db.connect(), AlertsConfig(), notify)
    conds = _conditions(40)
    engine.apply(conds)
    for row in engine.db.query("SELECT alert_id FROM alerts ORDER BY alert_id"):
        engine.acknowledge(row["alert_id"], "vet")
    # one target per cage, so the per-target order is checked for every cage
    engine.db.execute(
        "UPDATE alert_outbox SET target = (SELECT cage_id FROM alerts a WHERE a.alert_id = alert_outbox.alert_id)"
    )
    log: list = []
    lock = threading.Lock()
    workers = [
        Deliverer(db.connect(), notify, {"webhook:0": Recording(k, log, lock)}, engine.clock) for k in (0, 1)
    ]
    for _ in range(4):  # a target skipped in a pass (the other worker had its first row) goes in a later one
        _run_together(*(w.deliver_due for w in workers))
    sent = [(cage, event) for cage, event, _ in log]
    assert len(sent) == 80 and len(set(sent)) == 80, "each notification delivered exactly once"
    for cage in {c for c, _ in sent}:
        assert [e for c, e in sent if c == cage] == ["opened", "acknowledged"], cage
    check = db.connect()
    assert check.execute(
        "SELECT count(*), min(attempts), max(attempts) FROM alert_outbox WHERE delivered_at IS NOT NULL"
    ).fetchone() == (80, 1, 1)
