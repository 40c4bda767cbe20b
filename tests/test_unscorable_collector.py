"""Issue 11 (honest scores), the collector side: records a device marks ``outcome = "unscorable"`` are
stored with their reason and domain distance, counted per bin, and left out of every mean, fraction pain,
rollup sum and alert rule; ``no_usable_faces`` fires when they dominate a cage.

Records are built here as the devices send them (old devices without ``outcome`` included) and stored
through the collector's own ingest, on real SQLite files, on PostgreSQL, and through a real Mosquitto."""

from __future__ import annotations

import csv
import datetime as dt
import io
import sqlite3
import time

import pytest
from pg_support import pg_databases  # noqa: F401  (fixture)
from server_support import get_json, get_text, server_config, wait_for

from amgs.contract import Score, encode, new_msg_id, score_topic, status_topic
from amgs.demo import loadgen
from amgs.server.alerts.config import AlertsConfig
from amgs.server.alerts.inputs import window_stats
from amgs.server.alerts.rules import SYNTHETIC_MODEL, CageSnapshot, DeviceSnapshot, WindowStats, evaluate
from amgs.server.alerts.service import AlertRunner
from amgs.server.http.app import create_app
from amgs.server.ingest.classify import Incoming, score_row
from amgs.server.ingest.pg_ingest import PgIngestor
from amgs.server.ingest.store import Ingestor
from amgs.server.query import export, timecourse
from amgs.server.query.metadata import save
from amgs.server.storage.db import ROLLUP_SUMS, ROLLUP_TABLES, SCHEMA_VERSION, CollectorDB, open_database
from amgs.server.storage.pg import is_postgres
from amgs.server.storage.schema import ROLLUP_SUMS_V2, rollup_select
from tests.alert_helpers import MODEL, SITE, at
from tests.web_helpers import Served, http

HOUR = 3600


def record(
    seq: int,
    t: float,
    p: float,
    *,
    cage: str = "C1",
    device: str = "dev1",
    outcome: str | None = None,
    reason: str | None = None,
    distance: float | None = None,
    synthetic: bool = False,
    clock: dict | None = None,
) -> dict:
    """An ``amgs.score/1`` record as a device sends it. ``outcome=None``: a device older than the field;
    ``"scored"``: the outcome its label gives; ``"unscorable"`` with ``reason``. An unscorable record
    keeps the model's raw P(pain) and label, as devices send them."""
    label = "pain" if p >= 0.5 else "no pain"
    msg = {
        "schema": "amgs.score/1",
        "msg_id": new_msg_id(),
        "seq": seq,
        "device_id": device,
        "site": SITE,
        "cage_id": cage,
        "captured_at": at(t),
        "clock": clock or {"synced": True, "boot_id": "b", "monotonic_s": float(seq)},
        "model": {**MODEL, "synthetic": True} if synthetic else MODEL,
        "p_pain": p,
        "label": label,
        "amgs": p,
        "confidence": max(p, 1 - p),
        "needs_review": False,
    }
    if outcome is not None:
        msg["outcome"] = label if outcome == "scored" else outcome
    if reason is not None:
        msg["unscorable_reason"] = reason
    if distance is not None:
        msg["domain_distance"] = distance
    return Score.check(msg).wire()  # what the contract accepts, exactly


def incoming(msg: dict) -> Incoming:
    return Incoming(score_topic(msg["site"], msg["device_id"]), encode(msg), received_at=time.time())


def status(device: str, t: float, cages: list[str], state: str = "online") -> dict:
    return {
        "schema": "amgs.status/1",
        "device_id": device,
        "site": SITE,
        "state": state,
        "at": at(t),
        "views": [{"view": f"v{i}", "cage_id": c} for i, c in enumerate(cages)],
    }


def mixed(t0: float, cage: str = "C1", device: str = "dev1") -> list[dict]:
    """Nine records 10 s apart (one 5-min bucket): two from an old device (no outcome), two scored with
    an outcome, five unscorable (out_of_domain x3, no_face, quality) whose raw P(pain) is high."""
    spec = [
        (0.2, None, None, None),
        (0.6, None, None, None),
        (0.3, "scored", None, 0.4),
        (0.8, "scored", None, 0.5),
        (0.99, "unscorable", "out_of_domain", 3.2),
        (0.99, "unscorable", "out_of_domain", 3.5),
        (0.99, "unscorable", "out_of_domain", 4.0),
        (0.97, "unscorable", "no_face", None),
        (0.9, "unscorable", "quality", 0.7),
    ]
    return [
        record(i + 1, t0 + 10 * i, p, cage=cage, device=device, outcome=o, reason=r, distance=d)
        for i, (p, o, r, d) in enumerate(spec)
    ]


SCORED_MEAN = (0.2 + 0.6 + 0.3 + 0.8) / 4  # what every mean must be: the four scorable images only
BY_REASON = {"out_of_domain": 3, "no_face": 1, "quality": 1}


def rows(conn, sql: str, params=()) -> list[tuple]:
    return [tuple(r) for r in conn.execute(sql, params).fetchall()]


def rollup_matches_recompute(conn) -> None:
    """The incrementally kept rollups equal the one definition run over every stored score."""
    cols = ", ".join(ROLLUP_SUMS)
    for width, table in ROLLUP_TABLES.items():
        kept = sorted(
            rows(
                conn,
                f"SELECT cage_id, animal_id, bucket, {cols} FROM {table} WHERE n != 0 OR n_unscorable != 0",
            )
        )
        fresh = sorted(rows(conn, rollup_select(width)))
        assert len(kept) == len(fresh)
        for a, b in zip(kept, fresh, strict=True):
            assert a[:3] == b[:3]
            assert [float(x) for x in a[3:]] == pytest.approx([float(x) for x in b[3:]], abs=1e-9)


# --------------------------------------------------------------------------- SQLite and PostgreSQL


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """(config, db, ingestor) on a real SQLite file, or on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        config = server_config(tmp_path)
        db = open_database(config)
        return config, db, Ingestor(db, config)
    pg = request.getfixturevalue("pg_databases")  # skips with the reason when PostgreSQL is missing
    config = server_config(tmp_path, storage={"url": pg.create()})
    db = open_database(config)
    return config, db, PgIngestor(db, config)


@pytest.fixture(params=["sqlite", "postgresql"])
def config_on(request, tmp_path):
    """``server_config(tmp_path, ...)`` as it is (SQLite), or pointed at a fresh PostgreSQL database."""
    pg = request.getfixturevalue("pg_databases") if request.param == "postgresql" else None

    def make(broker=None, **sections):
        if pg is not None:
            sections.setdefault("storage", {})["url"] = pg.create()
        return server_config(tmp_path, broker, **sections)

    return make


def ingestor(db, config):
    return PgIngestor(db, config) if is_postgres(db) else Ingestor(db, config)


def test_ingest_stores_outcomes_and_counts_unscorable_apart(store):
    config, db, ing = store
    t0 = (int(time.time()) // HOUR - 2) * HOUR + 60  # two hours ago, inside one 5-min bucket
    msgs = mixed(t0)
    result = ing.process([incoming(m) for m in msgs])
    assert (result.stored, result.quarantined) == (9, 0)
    conn = db.local().conn

    stored = {
        r[0]: tuple(r[1:])
        for r in rows(conn, "SELECT seq, outcome, unscorable_reason, domain_distance, p_pain FROM scores")
    }
    assert stored[1] == (None, None, None, 0.2)  # an old device: no outcome = scorable
    assert stored[3] == ("no pain", None, 0.4, 0.3)
    assert stored[4] == ("pain", None, 0.5, 0.8)
    assert stored[5] == ("unscorable", "out_of_domain", 3.2, 0.99)  # the raw score kept for the record
    assert stored[8] == ("unscorable", "no_face", None, 0.97)
    assert stored[9] == ("unscorable", "quality", 0.7, 0.9)

    # rollups: every existing sum over the four scorable images, the unscorable ones counted by reason
    for table in ROLLUP_TABLES.values():
        (got,) = rows(
            conn,
            f"SELECT n, sum_amgs, n_pain, n_review, n_unsynced, n_unscorable, n_out_of_domain, n_no_face, "
            f"n_quality FROM {table}",
        )
        assert [float(x) for x in got] == pytest.approx([4, 4 * SCORED_MEAN, 2, 0, 0, 5, 3, 1, 1])
    rollup_matches_recompute(conn)

    # a redelivery of the whole batch changes nothing
    again = ing.process([incoming(m) for m in msgs])
    assert (again.stored, again.duplicates, again.quarantined) == (0, 9, 0)
    assert [float(x) for x in rows(conn, "SELECT sum(n), sum(n_unscorable) FROM rollup_5m")[0]] == [4, 5]

    # the time course: n and every figure over scorable images, n_unscorable beside them
    hour = t0 - 60
    tc = timecourse.cage_timecourse(conn, "C1", start=hour, end=hour + HOUR, bin_s=HOUR, now=time.time())
    (b,) = tc["bins"]
    assert (b["n"], b["n_pain"], b["n_unscorable"], b["unscorable"]) == (4, 2, 5, BY_REASON)
    assert b["mean_amgs"] == pytest.approx(SCORED_MEAN) and b["frac_pain"] == pytest.approx(0.5)
    empty = timecourse.stats(None)
    assert (empty["n"], empty["n_unscorable"], empty["mean_amgs"]) == (0, 0, None)

    # exports: the raw rows carry what the device said; the tidy time course carries the counts
    raw = list(csv.DictReader(io.StringIO("".join(export.scores_csv(conn, hour, hour + HOUR, "C1")))))
    assert len(raw) == 9
    by_seq = {int(r["seq"]): r for r in raw}
    assert (by_seq[1]["outcome"], by_seq[1]["unscorable_reason"], by_seq[1]["domain_distance"]) == (
        "",
        "",
        "",
    )
    assert (by_seq[6]["outcome"], by_seq[6]["unscorable_reason"], float(by_seq[6]["domain_distance"])) == (
        "unscorable",
        "out_of_domain",
        3.5,
    )
    tidy = list(csv.DictReader(io.StringIO("".join(export.timecourse_csv(tc)))))
    metrics = {r["metric"]: r for r in tidy}
    assert (
        int(metrics["n_unscorable"]["value"]) == 5 and int(metrics["unscorable_out_of_domain"]["value"]) == 3
    )
    assert int(metrics["mean_amgs"]["n_images"]) == 4
    assert float(metrics["mean_amgs"]["value"]) == pytest.approx(SCORED_MEAN)


def test_the_detector_score_of_a_face_box_is_stored_and_exported(store):
    """Issue 13: a crop found by the face detector carries the detector's box and score to the collector."""
    config, db, ing = store
    t0 = time.time() - HOUR
    found = record(1, t0, 0.3, outcome="scored") | {
        "face_box": [40, 30, 220, 210],
        "quality": {"sharpness": 80.0, "det_score": 0.87},
    }
    region = record(2, t0 + 10, 0.4, outcome="scored")  # a fixed region: no detector score
    result = ing.process([incoming(Score.check(m).wire()) for m in (found, region)])
    assert (result.stored, result.quarantined) == (2, 0)
    conn = db.local().conn
    assert rows(conn, "SELECT seq, face_box, det_score FROM scores ORDER BY seq") == [
        (1, "[40,30,220,210]", 0.87),
        (2, None, None),
    ]
    lines = "".join(export.scores_csv(conn, t0 - 60, t0 + 60)).splitlines()
    header = lines[0].split(",")
    assert [line.split(",")[header.index("det_score")] for line in lines[1:]] == ["0.87", ""]


def test_only_unscorable_images_make_a_bin_with_no_mean_but_a_count(store):
    config, db, ing = store
    t0 = (int(time.time()) // HOUR - 3) * HOUR + 30
    ing.process(
        [incoming(record(s, t0 + 20 * s, 0.99, outcome="unscorable", reason="quality")) for s in range(1, 7)]
    )
    conn = db.local().conn
    hour = t0 - 30
    tc = timecourse.cage_timecourse(conn, "C1", start=hour, end=hour + HOUR, bin_s=HOUR, now=time.time())
    (b,) = tc["bins"]
    assert (b["n"], b["mean_amgs"], b["frac_pain"], b["n_unscorable"]) == (0, None, None, 6)
    tidy = list(csv.DictReader(io.StringIO("".join(export.timecourse_csv(tc)))))
    assert {r["metric"]: int(r["value"]) for r in tidy} == {"n_unscorable": 6, "unscorable_quality": 6}


def test_re_anchoring_moves_unscorable_counts_with_their_records(store):
    """The re-anchoring path takes rollup sums out (sign "-") and puts them back at the corrected time:
    scorable and unscorable counts both move, nothing is left under the stale time."""
    config, db, ing = store
    true_start = time.time() - HOUR
    stale = dt.datetime(2001, 1, 1, tzinfo=dt.UTC).timestamp()

    def unsynced(seq, p, mono, **kw):
        return record(
            seq, stale + mono, p, clock={"synced": False, "boot_id": "boot-7", "monotonic_s": mono}, **kw
        )

    ing.process(
        [
            incoming(unsynced(1, 0.3, 10.0)),
            incoming(unsynced(2, 0.99, 20.0, outcome="unscorable", reason="out_of_domain")),
            incoming(unsynced(3, 0.99, 30.0, outcome="unscorable", reason="no_face")),
        ]
    )
    conn = db.local().conn
    assert [
        float(x) for x in rows(conn, "SELECT sum(n), sum(n_unscorable) FROM rollup_1h WHERE bucket < 1e9")[0]
    ] == [1, 2]
    anchor = loadgen.status_message(
        "dev1", site=SITE, clock={"synced": True, "boot_id": "boot-7", "monotonic_s": 40.0}
    )
    anchor["at"] = at(true_start + 40)
    ing.process([Incoming(status_topic(SITE, "dev1"), encode(anchor), 1, 1)])
    assert ing.reanchor(time.time()) == 3
    assert rows(
        conn, "SELECT count(*) FROM rollup_1h WHERE bucket < 1e9 AND (n != 0 OR n_unscorable != 0)"
    ) == [(0,)]
    moved = rows(
        conn,
        "SELECT sum(n), sum(n_unscorable), sum(n_out_of_domain), sum(n_no_face) FROM rollup_5m WHERE bucket > 1e9",
    )
    assert [float(x) for x in moved[0]] == [1, 2, 1, 1]
    rollup_matches_recompute(conn)


# --------------------------------------------------------------------------- migration 10


def _insert_v9_scores(conn, msgs) -> None:
    have = {d[0] for d in conn.execute("SELECT * FROM scores LIMIT 0").description}  # SQLite or PostgreSQL
    score_rows = [score_row(m, time.time()) for m in msgs]
    cols = [c for c in score_rows[0] if c in have]
    conn.executemany(
        f"INSERT INTO scores ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
        [tuple(r[c] for c in cols) for r in score_rows],
    )
    for width, table in ROLLUP_TABLES.items():
        conn.execute(
            f"INSERT INTO {table} (cage_id, animal_id, bucket, {', '.join(ROLLUP_SUMS_V2)}) "
            f"{rollup_select(width, before_outcomes=True)}"
        )


def _schema(path, tables=("scores", "rollup_5m", "rollup_1h")):
    with sqlite3.connect(path) as conn:
        return conn.execute(
            f"SELECT type, name, sql FROM sqlite_master WHERE tbl_name IN ({', '.join('?' * len(tables))}) "
            "AND sql IS NOT NULL ORDER BY type, name",
            tables,
        ).fetchall()


def test_upgrade_from_version_9_keeps_scores_and_rollups(tmp_path):
    config = server_config(tmp_path / "old")
    old = CollectorDB(config.storage.db_path)
    assert old.migrate(target=9)[-1] == 9
    conn = old.connect().conn
    t0 = (int(time.time()) // HOUR - 5) * HOUR
    v9 = [record(s, t0 + 400 * s, (s % 10) / 10, device="old") for s in range(1, 31)]  # a version-9 device
    _insert_v9_scores(conn, v9)
    cols = ", ".join(ROLLUP_SUMS_V2)
    before = {
        t: sorted(rows(conn, f"SELECT cage_id, animal_id, bucket, {cols} FROM {t}"))
        for t in ROLLUP_TABLES.values()
    }
    conn.close()

    db = open_database(config)
    assert db.version() == SCHEMA_VERSION >= 10
    assert len(list(config.storage.backups_dir.glob("collector-*-from-v9.db"))) == 1
    c = db.local().conn
    assert rows(
        c, "SELECT count(*), count(outcome), count(unscorable_reason), count(domain_distance) FROM scores"
    ) == [(30, 0, 0, 0)]
    for table, kept in before.items():  # the old sums unchanged, the new counts 0
        assert sorted(rows(c, f"SELECT cage_id, animal_id, bucket, {cols} FROM {table}")) == kept
        assert rows(
            c, f"SELECT sum(n_unscorable + n_out_of_domain + n_no_face + n_quality) FROM {table}"
        ) == [(0,)]
    rollup_matches_recompute(c)
    fresh = server_config(tmp_path / "new")
    open_database(fresh)
    assert _schema(config.storage.db_path) == _schema(fresh.storage.db_path)  # same as a new database

    # the upgraded database takes the new records at once
    Ingestor(db, config).process([incoming(m) for m in mixed(t0 + 7 * 60, device="new")])
    rollup_matches_recompute(c)
    assert rows(c, "SELECT sum(n), sum(n_unscorable) FROM rollup_1h") == [(30 + 4, 5)]


def test_upgrade_from_version_9_on_postgresql(pg_databases):  # noqa: F811
    from amgs.server.storage.pg import PgDatabase

    pg = PgDatabase(pg_databases.create())
    assert pg.migrate(target=9)[-1] == 9
    conn = pg.local()
    t0 = (int(time.time()) // HOUR - 5) * HOUR
    _insert_v9_scores(conn, [record(s, t0 + 400 * s, 0.1 * (s % 10), device="old") for s in range(1, 21)])
    assert pg.migrate() == [10]
    assert rows(conn, "SELECT count(*), count(outcome) FROM scores") == [(20, 0)]
    assert [float(x) for x in rows(conn, "SELECT sum(n), sum(n_unscorable) FROM rollup_5m")[0]] == [20, 0]
    rollup_matches_recompute(conn)


# --------------------------------------------------------------------------- API and dashboard


def test_api_and_dashboard_show_unscorable_counts(tmp_path):
    config = server_config(tmp_path, notify={"mqtt": {"enabled": False}})
    db = open_database(config)
    save(db.local().conn, "cages", {"cage_id": "C1", "site_id": SITE})
    now = time.time()
    t0 = (int(now) // HOUR - 2) * HOUR + 60
    Ingestor(db, config).process([incoming(m) for m in mixed(t0)])
    served = Served(create_app(config, db))
    try:
        status, _, body = http("GET", f"{served.base}/api/timecourse/cage/C1?hours=4&bin=1h")
        assert status == 200, body
        (b,) = [b for b in body["bins"] if b["n"] or b["n_unscorable"]]
        assert (b["n"], b["n_unscorable"], b["unscorable"]) == (4, 5, BY_REASON)
        assert b["mean_amgs"] == pytest.approx(SCORED_MEAN) and b["frac_pain"] == pytest.approx(0.5)

        status, _, text = http("GET", f"{served.base}/api/export/scores.csv?cage_id=C1")
        assert status == 200
        exported = list(csv.DictReader(io.StringIO(text)))
        assert [r["outcome"] for r in exported].count("unscorable") == 5
        assert {r["unscorable_reason"] for r in exported} == {"", "out_of_domain", "no_face", "quality"}

        status, _, body = http("GET", f"{served.base}/api/overview")
        (tile,) = [t for t in body["cages"] if t["cage_id"] == "C1"]
        assert (tile["window"]["n"], tile["window"]["n_unscorable"]) == (4, 5)
        assert tile["window"]["mean_amgs"] == pytest.approx(SCORED_MEAN)

        status, _, page = http("GET", f"{served.base}/cages/C1")
        assert status == 200 and 'id="unscorable-note"' in page
        status, _, script = http("GET", f"{served.base}/static/js/cage.js")
        assert status == 200 and "n_unscorable" in script
    finally:
        served.stop()


@pytest.mark.browser
def test_dashboard_draws_unscorable_counts_in_chromium(tmp_path):
    """The cage page draws the unscorable count per bin beside the images scored, with a note of the
    reasons; the overview tile gives the window's unscorable share."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    from tests.web_helpers import launch_chromium

    config = server_config(tmp_path, notify={"mqtt": {"enabled": False}})
    db = open_database(config)
    save(db.local().conn, "cages", {"cage_id": "C1", "site_id": SITE})
    t0 = (int(time.time()) // HOUR - 2) * HOUR + 60
    Ingestor(db, config).process([incoming(m) for m in mixed(t0)])
    served = Served(create_app(config, db))
    errors: list[str] = []
    try:
        with playwright_api.sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{served.base}/cages/C1?hours=24&bin=1h")
            page.wait_for_function("Number(document.body.dataset.ready || 0) >= 1", timeout=45000)
            labels = page.evaluate("AMGS.charts.pain.series.map((s) => s.label)")
            assert labels[1:] == ["fraction pain", "images scored", "images unscorable"]
            assert page.evaluate("AMGS.charts.pain.data[2].reduce((a, b) => a + (b || 0), 0)") == 4
            assert page.evaluate("AMGS.charts.pain.data[3].reduce((a, b) => a + (b || 0), 0)") == 5
            note = page.locator("#unscorable-note").inner_text()
            assert note.startswith(
                "5 of 9 images in this range were unscorable (out of domain 3, no face 1, quality 1)"
            )
            page.goto(f"{served.base}/")
            page.wait_for_function("Number(document.body.dataset.ready || 0) >= 1", timeout=45000)
            assert "24 h: 5 of 9 img unscorable (56%)" in page.locator(".tile[data-cage=C1]").inner_text()
            browser.close()
    finally:
        served.stop()
    assert not errors, f"JavaScript errors: {errors}"


# --------------------------------------------------------------------------- alerts


NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
CAGE = CageSnapshot(SITE, "C01", "M1", "dev1", last_score_at=NOW - dt.timedelta(hours=3))
ONLINE = DeviceSnapshot(SITE, "dev1", "online", NOW - dt.timedelta(days=1), ("C01",))
NINE_OF_TEN = WindowStats(1, 0.1, 0.0, False, 9, (("out_of_domain", 7), ("quality", 2)))


def _found(findings):
    return {c.rule: c for c in findings.conditions}


def test_no_usable_faces_rule_thresholds_message_and_synthetic_prefix():
    cfg = AlertsConfig()
    findings = evaluate(cfg, NOW, [CAGE], [ONLINE], lambda cage, since, until: NINE_OF_TEN)
    c = _found(findings)["no_usable_faces"]
    assert c.message == (
        "no usable faces in cage C01: 9 of 10 images unscorable (out_of_domain 7, quality 2) in the last 2 h: "
        "check the camera and the cage"
    )
    assert (c.severity, c.value, c.threshold, c.device_id) == ("warning", 0.9, 0.8, "dev1")
    # the last scorable face is 3 h old, but the rule that says why holds: no_faces waits, unresolved
    assert "no_faces" not in _found(findings) and f"no_faces:{SITE}:C01" in findings.unknown
    assert "sustained_pain" not in _found(findings)

    below = WindowStats(3, 0.1, 0.0, False, 11, (("quality", 11),))  # 11 of 14 = 0.79
    assert "no_usable_faces" not in _found(evaluate(cfg, NOW, [CAGE], [ONLINE], lambda *a: below))
    few = WindowStats(0, None, None, False, 5, (("no_face", 5),))  # 5 < min_images 6: not judged
    sparse = evaluate(cfg, NOW, [CAGE], [ONLINE], lambda *a: few)
    assert "no_usable_faces" not in _found(sparse) and f"no_usable_faces:{SITE}:C01" in sparse.unknown
    assert "no_faces" in _found(sparse)  # nothing usable and too little to say why: the cage is quiet

    synthetic = WindowStats(1, 0.1, 0.0, False, 9, (("out_of_domain", 9),), unscorable_synthetic=True)
    msg = _found(evaluate(cfg, NOW, [CAGE], [ONLINE], lambda *a: synthetic))["no_usable_faces"].message
    assert msg.startswith(f"{SYNTHETIC_MODEL}: no usable faces in cage C01: 9 of 10")
    off = AlertsConfig(no_usable_faces={"enabled": False})
    assert "no_usable_faces" not in _found(evaluate(off, NOW, [CAGE], [ONLINE], lambda *a: NINE_OF_TEN))


def test_alerts_ignore_unscorable_records_and_say_no_usable_faces(config_on):
    """C1 (flat and noise frames: 9 of 10 unscorable, raw P(pain) 0.99) raises no pain alert but
    no_usable_faces; C2 (faces, a few unscorable) raises neither; C3 (faces in pain) shows the pain rule
    works in the same pass. When C1's faces come back the alert resolves."""
    config = config_on(
        notify={"mqtt": {"enabled": False}},
        alerts={"pain": {"min_images": 5}, "humane_endpoint": {"min_images": 5}},
    )
    db = open_database(config)
    ing = ingestor(db, config)
    now = time.time()
    t1 = now - 3 * HOUR  # the first evaluation
    batch = [
        incoming(status(d, t1 - 4 * HOUR, [c])) for d, c in (("dev1", "C1"), ("dev2", "C2"), ("dev3", "C3"))
    ]
    reasons = ["out_of_domain"] * 7 + ["quality"] * 2
    for i in range(10):  # C1: one image every 10 min over the 100 min before t1
        t = t1 - 95 * 60 + i * 600
        if i < 9:
            batch.append(
                incoming(record(i + 1, t, 0.99, outcome="unscorable", reason=reasons[i], distance=3.0))
            )
        else:
            batch.append(incoming(record(i + 1, t, 0.1, outcome="scored", distance=0.3)))
    for i in range(22):  # C2: faces, two of them unscorable
        bad = i in (5, 15)
        kw = {"outcome": "unscorable", "reason": "quality"} if bad else {}
        batch.append(
            incoming(
                record(i + 1, t1 - 110 * 60 + i * 300, 0.99 if bad else 0.1, cage="C2", device="dev2", **kw)
            )
        )
    for i in range(10):  # C3: faces in pain (an old device: no outcome)
        batch.append(incoming(record(i + 1, t1 - 50 * 60 + i * 300, 0.9, cage="C3", device="dev3")))
    assert ing.process(batch).stored == 42

    conn = db.local().conn
    w = window_stats(
        conn,
        CageSnapshot(SITE, "C1"),
        dt.datetime.fromtimestamp(t1 - 2 * HOUR, dt.UTC),
        dt.datetime.fromtimestamp(t1, dt.UTC),
    )
    assert (w.n, w.mean_amgs, w.fraction_pain, w.n_unscorable) == (1, pytest.approx(0.1), 0, 9)
    assert w.unscorable_reasons == (("out_of_domain", 7), ("quality", 2))

    clock = [dt.datetime.fromtimestamp(t1, dt.UTC)]
    runner = AlertRunner(db.local, config.alerts, config.notify, mqtt=None, clock=lambda: clock[0])
    opened = {
        (c.alert["rule"], c.alert["cage_id"]): c.alert for c in runner.evaluate_once() if c.kind == "opened"
    }
    assert set(opened) == {("no_usable_faces", "C1"), ("sustained_pain", "C3")}
    assert opened[("no_usable_faces", "C1")]["message"] == (
        "no usable faces in cage C1: 9 of 10 images unscorable (out_of_domain 7, quality 2) in the last 2 h: "
        "check the camera and the cage"
    )
    assert opened[("no_usable_faces", "C1")]["severity"] == "warning"

    # C1's faces come back: 20 scorable images over the last 100 min; the alert resolves, no pain alert
    ing.process(
        [incoming(record(100 + i, now - 100 * 60 + i * 300, 0.2, outcome="scored")) for i in range(20)]
    )
    clock[0] = dt.datetime.fromtimestamp(now, dt.UTC)
    changes = {(c.kind, c.alert["rule"], c.alert["cage_id"]) for c in runner.evaluate_once()}
    assert ("resolved", "no_usable_faces", "C1") in changes
    assert not any(rule == "sustained_pain" and cage == "C1" for _, rule, cage in changes)


# --------------------------------------------------------------------------- rating pool


def test_rating_pool_flags_unscorable_crops(tmp_path):
    """An unscorable image's crop is drawn only on request (``rating.unscorable_share``), never into the
    P(pain) strata: its raw P(pain) means nothing."""
    from amgs.server.rating.pool import candidates
    from tests.rating_helpers import add_score

    config = server_config(tmp_path)
    db = open_database(config)
    conn = db.local().conn
    add_score(conn, config.storage.state_dir, "good", "C1", 1000.0, 0.9)
    add_score(conn, config.storage.state_dir, "flat", "C1", 1001.0, 0.99, unscorable="out_of_domain")
    flagged = {c.msg_id: c.flagged for c, _ in candidates(conn, 0, 2000)}
    assert flagged == {"good": False, "flat": True}


# --------------------------------------------------------------------------- through a real broker


def test_collector_over_mqtt_counts_unscorable_and_raises_no_usable_faces(config_on, broker):
    """Records published over a real Mosquitto as devices would: one device looking at flat and noise
    frames (unscorable, raw P(pain) 0.99), one at faces. The collector shows the unscorable counts, raises
    no pain alert on the controls and raises no_usable_faces for them."""
    from amgs.server.service import Collector, collector_jobs

    config = config_on(
        broker,
        notify={"mqtt": {"enabled": False}},
        alerts={"evaluate_every_s": 0.5, "pain": {"min_images": 5}},
    )
    now = time.time()
    flat = [
        record(
            s,
            now - 50 * 60 + s * 120,
            0.99,
            cage="CTRL",
            device="cam1",
            outcome="unscorable",
            reason="out_of_domain" if s % 2 else "quality",
            distance=5.0,
        )
        for s in range(1, 21)
    ]
    faces = [
        record(s, now - 50 * 60 + s * 120, 0.15, cage="FACE", device="cam2", outcome="scored", distance=0.2)
        for s in range(1, 21)
    ]
    items = [
        (status_topic(SITE, d), encode(status(d, now - 60, [c])))
        for d, c in (("cam1", "CTRL"), ("cam2", "FACE"))
    ]
    items += [loadgen.score_payload(m) for m in flat + faces]

    collector = Collector(config, jobs=collector_jobs(config))  # what `amgs server run` runs
    collector.start()
    try:
        wait_for(collector.mqtt.connected.is_set, what="collector connected")
        loadgen.publish_all("127.0.0.1", broker.port, items)
        count = lambda: collector.db.local().execute("SELECT count(*) FROM scores").fetchone()[0]  # noqa: E731
        wait_for(lambda: count() == 40, what="40 scores")
        base = f"http://127.0.0.1:{collector.http_port}"
        ctrl = get_json(
            base + "/api/timecourse/cage/CTRL?hours=2&bin=5m"
        )  # 5 min bins: none cut by the window's edges
        assert sum(b["n"] for b in ctrl["bins"]) == 0
        assert sum(b["n_unscorable"] for b in ctrl["bins"]) == 20
        assert sum(b["unscorable"]["out_of_domain"] for b in ctrl["bins"]) == 10
        face = get_json(
            base + "/api/timecourse/cage/FACE?hours=2&bin=5m"
        )  # 5 min bins: none cut by the window's edges
        assert sum(b["n"] for b in face["bins"]) == 20 and sum(b["n_unscorable"] for b in face["bins"]) == 0

        def alerts():
            return {(a["rule"], a["cage_id"]): a for a in get_json(base + "/api/alerts?state=open")}

        found = wait_for(
            lambda: alerts().get(("no_usable_faces", "CTRL")) and alerts(), what="no_usable_faces"
        )
        assert found[("no_usable_faces", "CTRL")]["message"].startswith(
            "no usable faces in cage CTRL: 20 of 20 images unscorable (out_of_domain 10, quality 10)"
        )
        time.sleep(1.5)  # a few more evaluation passes
        rules = set(alerts())
        assert not {r for r in rules if r[0] in ("sustained_pain", "baseline_rise")}
        assert ("no_usable_faces", "FACE") not in rules
        assert "unscorable" in get_text(base + "/api/export/scores.csv?cage_id=CTRL")
    finally:
        collector.stop()
