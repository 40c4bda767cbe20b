"""Time courses, group curves, CSV exports and the HTTP API checked against hand computations."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import statistics
import threading
import time
import urllib.request

import pytest
import uvicorn
from server_support import get_json, get_text, http_error, server_config, wait_for

from amgs.contract import encode, status_topic
from amgs.demo import loadgen
from amgs.server.http.app import create_app
from amgs.server.ingest.classify import Incoming
from amgs.server.ingest.store import Ingestor
from amgs.server.query.metadata import save
from amgs.server.storage.db import open_database

H = 3600.0
DAY0 = dt.datetime(2026, 3, 2, tzinfo=dt.UTC).timestamp()  # a Monday, 00:00 UTC
SURGERY = {"m1": DAY0 + 10 * H, "m2": DAY0 + 12 * H + 20 * 60, "m3": DAY0 + 10 * H}

# (animal, hours relative to its surgery, aMGS) - baseline before, pain after
OBS = {
    "m1": [
        (-5.5, 0.10),
        (-5.2, 0.20),
        (-3.1, 0.30),
        (0.2, 0.70),
        (0.4, 0.90),
        (0.9, 0.80),
        (1.5, 0.60),
        (5.1, 0.40),
    ],
    "m2": [(-4.0, 0.20), (-2.0, 0.20), (0.1, 0.50), (0.7, 0.70), (1.2, 0.55), (5.5, 0.30)],
    "m3": [(-4.5, 0.15), (-1.0, 0.25), (0.3, 0.20), (0.6, 0.30), (1.1, 0.10), (5.2, 0.15)],
}
CAGE = {"m1": "c1", "m2": "c2", "m3": "c3"}
GROUP = {"m1": "lap", "m2": "lap", "m3": "sham"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    config = server_config(tmp, photoperiod={"lights_on": "07:00", "lights_off": "19:00", "timezone": "UTC"})
    db = open_database(config)
    conn = db.local().conn
    for group in ("lap", "sham"):
        save(conn, "groups", {"group_id": group, "name": group})
    for animal, cage in CAGE.items():
        save(conn, "cages", {"cage_id": cage, "room_id": "r1"})
        save(
            conn,
            "animals",
            {"animal_id": animal, "cage_id": cage, "group_id": GROUP[animal], "housing": "single"},
        )
        save(
            conn,
            "events",
            {
                "kind": "surgery",
                "at": dt.datetime.fromtimestamp(SURGERY[animal], dt.UTC),
                "animal_id": animal,
            },
        )
    save(conn, "assignments", {"device_id": "dev-c1", "cage_id": "c1", "start": "2026-03-01T00:00:00Z"})
    ing = Ingestor(db, config)
    items, seq = [], {}
    for animal, rows in OBS.items():
        for hours, value in rows:
            device = f"dev-{CAGE[animal]}"
            seq[device] = seq.get(device, 0) + 1
            msg = loadgen.score_message(
                device,
                seq[device],
                cage_id=CAGE[animal],
                animal_id=animal,
                t=SURGERY[animal] + hours * H,
                amgs=value,
            )
            msg["au"] = {k: value * 2 for k in msg["au"]}
            msg["mgs_au"] = value * 2
            msg["quality"]["motion"] = value / 10
            items.append(Incoming(*loadgen.score_payload(msg), mid=len(items) + 1, qos=1))
    ing.process(items)
    # cumulative reject counters from dev-c1's status: 5 blur at 10:30, 12 blur + 2 no_face at 11:30
    for at, rejected in (
        (DAY0 + 9.5 * H, {"blur": 1}),
        (DAY0 + 10.5 * H, {"blur": 5}),
        (DAY0 + 11.5 * H, {"blur": 12, "no_face": 2}),
    ):
        status = loadgen.status_message("dev-c1", rejected=rejected)
        status["at"] = dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        ing.process([Incoming(status_topic("lab", "dev-c1"), encode(status), 1, 1)])
    return config, db


@pytest.fixture(scope="module")
def api(study):
    config, db = study
    app = create_app(config, db)
    app.dependency_overrides.clear()  # the API alone: the dashboard's login is tested in tests/test_web_auth.py
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, what="uvicorn started")
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


def values(animal, lo, hi):
    """aMGS values of an animal observed in [lo, hi) hours relative to its surgery."""
    return [v for h, v in OBS[animal] if lo <= h < hi]


def iso(t):
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_cage_wall_clock_bins_match_hand_computation(api):
    tc = get_json(
        f"{api}/api/timecourse/cage/c1?bin=1h&start={iso(DAY0)}&end={iso(DAY0 + DAY0 * 0 + 24 * H)}"
    )
    by_start = {b["start_t"]: b for b in tc["bins"]}
    assert len(tc["bins"]) == 24
    b = by_start[DAY0 + 10 * H]  # 10:00-11:00 holds the scores at +0.2, +0.4, +0.9 h
    vals = values("m1", 0, 1)
    assert b["n"] == 3
    assert b["mean_amgs"] == pytest.approx(statistics.mean(vals))
    assert b["sd_amgs"] == pytest.approx(statistics.stdev(vals))
    assert b["sem_amgs"] == pytest.approx(statistics.stdev(vals) / 3**0.5)
    assert b["frac_pain"] == pytest.approx(sum(v >= 0.5 for v in vals) / 3)
    assert b["au"]["ot"] == pytest.approx(2 * statistics.mean(vals))
    assert b["mgs_au"] == pytest.approx(2 * statistics.mean(vals))
    assert b["activity"] == pytest.approx(statistics.mean(vals) / 10)
    assert b["phase"] == "light"
    assert b["rejected"] == {"blur": 4}  # 5 - 1 between the status at 09:30 and 10:30
    assert by_start[DAY0 + 11 * H]["rejected"] == {"blur": 7, "no_face": 2}
    assert by_start[DAY0 + 4 * H]["n"] == 2 and by_start[DAY0 + 4 * H]["phase"] == "dark"  # 04:30 and 04:48
    assert by_start[DAY0 + 13 * H]["n"] == 0 and by_start[DAY0 + 13 * H]["mean_amgs"] is None
    assert tc["dark"][0] == ["2026-03-02T00:00:00.000Z", "2026-03-02T07:00:00.000Z"]
    assert [e["kind"] for e in tc["events"]] == []  # the surgery event belongs to the animal, not the cage


def test_six_hour_bins_report_mixed_phase_and_single_sample_has_no_sem(api):
    tc = get_json(f"{api}/api/timecourse/cage/c3?bin=6h&start={iso(DAY0)}&end={iso(DAY0 + 24 * H)}")
    phases = [b["phase"] for b in tc["bins"]]
    assert phases == ["dark", "mixed", "light", "mixed"]  # lights on at 07:00, off at 19:00
    one = get_json(
        f"{api}/api/timecourse/cage/c3?bin=5m&start={iso(DAY0 + 5.5 * H)}&end={iso(DAY0 + 5.6 * H)}"
    )
    single = [b for b in one["bins"] if b["n"]]
    assert len(single) == 1 and single[0]["sem_amgs"] is None


def test_animal_aligned_to_surgery_relative_to_its_baseline(api):
    tc = get_json(f"{api}/api/timecourse/animal/m2?bin=1h&event=surgery&baseline_h=6")
    base = statistics.mean(values("m2", -6, 0))
    assert tc["baseline"]["mean_amgs"] == pytest.approx(base) and tc["baseline"]["n"] == 2
    hours = {b["hours"]: b for b in tc["bins"]}
    assert min(hours) == -24 and max(hours) == 71  # default window 24 h before to 72 h after
    first = hours[0.0]
    assert first["n"] == 2  # +0.1 and +0.7 h (5-min buckets by midpoint)
    assert first["mean_amgs"] == pytest.approx(statistics.mean(values("m2", 0, 1)))
    assert first["delta_amgs"] == pytest.approx(statistics.mean(values("m2", 0, 1)) - base)
    assert hours[1.0]["mean_amgs"] == pytest.approx(0.55)
    assert tc["event"]["kind"] == "surgery" and tc["animal"]["group_id"] == "lap"


def test_group_mean_and_sem_over_animals(api):
    tc = get_json(
        f"{api}/api/timecourse/group/lap?bin=1h&event=surgery&baseline_h=6&hours_before=6&hours_after=6"
    )
    assert tc["animals"] == ["m1", "m2"]
    hours = {b["hours"]: b for b in tc["bins"]}
    per_animal = [statistics.mean(values(a, 0, 1)) for a in ("m1", "m2")]
    b = hours[0.0]
    assert b["n_animals"] == 2 and b["n_images"] == 5
    assert b["mean_amgs"] == pytest.approx(statistics.mean(per_animal))
    assert b["sem_amgs"] == pytest.approx(statistics.stdev(per_animal) / 2**0.5)
    deltas = [statistics.mean(values(a, 0, 1)) - statistics.mean(values(a, -6, 0)) for a in ("m1", "m2")]
    assert b["delta_amgs"] == pytest.approx(statistics.mean(deltas))
    assert b["sem_delta_amgs"] == pytest.approx(statistics.stdev(deltas) / 2**0.5)
    sham = get_json(f"{api}/api/timecourse/group/sham?bin=1h&event=surgery&hours_before=6&hours_after=6")
    s0 = {x["hours"]: x for x in sham["bins"]}[0.0]
    assert s0["n_animals"] == 1 and s0["sem_amgs"] is None
    assert b["mean_amgs"] > s0["mean_amgs"]  # laparotomy above sham, as in the paper's figure


def test_overview_lists_every_cage(api, study):
    config, db = study
    tiles = get_json(f"{api}/api/overview?hours=24")["cages"]
    assert [t["cage_id"] for t in tiles] == ["c1", "c2", "c3"]
    assert tiles[0]["groups"] == ["lap"] and len(tiles[0]["sparkline"]) == 24
    assert tiles[0]["last_score_at"].startswith("2026-03-02T15:06")  # m1's last score: 10:00 + 5.1 h


def test_csv_exports_are_tidy_and_readable(api):
    text = get_text(f"{api}/api/timecourse/group/lap?bin=1h&event=surgery&baseline_h=6&format=csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == [
        "series", "series_id", "group_id", "bin_start", "hours_since_event", "phase",
        "n_images", "n_animals", "metric", "value", "sem",
    ]  # fmt: skip
    group_mean = [
        r
        for r in rows
        if r["series"] == "group" and r["metric"] == "mean_amgs" and r["hours_since_event"] == "0.0"
    ]
    assert len(group_mean) == 1 and float(group_mean[0]["n_animals"]) == 2
    assert {r["series_id"] for r in rows if r["series"] == "animal"} == {"m1", "m2"}
    scores = list(csv.DictReader(io.StringIO(get_text(f"{api}/api/export/scores.csv?cage_id=c1"))))
    assert len(scores) == len(OBS["m1"])
    assert scores[0]["group_id"] == "lap" and float(scores[0]["amgs"]) == 0.10
    assert {"captured_at", "cage_id", "animal_id", "amgs", "p_pain", "label", "au_ot", "mgs_au"} <= set(
        scores[0]
    )


def test_metadata_api_and_clear_errors(api):
    ok, body = http_error(
        f"{api}/api/meta/cages", json.dumps({"cage_id": "c9", "room_id": "r2"}).encode(), "POST"
    )
    assert ok == 200 and body["cage_id"] == "c9"
    code, body = http_error(
        f"{api}/api/meta/animals", json.dumps({"animal_id": "m9", "sex": "X"}).encode(), "POST"
    )
    assert code == 400 and "sex" in body["detail"] and "'X'" in body["detail"]
    code, body = http_error(
        f"{api}/api/meta/animals", json.dumps({"animal_id": "m9", "colour": "b"}).encode(), "POST"
    )
    assert code == 400 and "colour" in body["detail"]
    req = urllib.request.Request(
        f"{api}/api/import/events",
        data=b"kind,at,animal_id,value,unit\nanalgesic,2026-03-02 11:00,m1,0.1,mg/kg\n",
        method="POST",
    )
    assert json.loads(urllib.request.urlopen(req).read()) == {"kind": "events", "imported": 1}
    code, body = http_error(
        f"{api}/api/import/events", b"kind,at,animal_id\nbath,2026-03-02 11:00,m1\n", "POST"
    )
    assert code == 400 and "line 2" in body["detail"] and "kind" in body["detail"]
    code, body = http_error(f"{api}/api/timecourse/cage/c1?bin=7m")
    assert code == 400 and "multiple of 5 min" in body["detail"]
    code, body = http_error(f"{api}/api/timecourse/animal/nobody")
    assert code == 400 and "not registered" in body["detail"]
    spec = get_json(f"{api}/openapi.json")
    assert "/api/timecourse/group/{group_id}" in spec["paths"] and "/healthz" in spec["paths"]


def test_rollups_equal_a_recomputation_from_raw_scores(study):
    from amgs.server.storage.db import ROLLUP_SUMS, rollup_select

    _, db = study
    conn = db.local().conn
    for width, table in ((300, "rollup_5m"), (3600, "rollup_1h")):
        stored = sorted(
            conn.execute(f"SELECT cage_id, animal_id, bucket, {', '.join(ROLLUP_SUMS)} FROM {table}")
        )
        fresh = sorted(conn.execute(rollup_select(width)))
        assert len(stored) == len(fresh)
        for a, b in zip(stored, fresh, strict=True):
            assert a[:3] == b[:3] and a[3:] == pytest.approx(b[3:])


def test_event_alignment_needs_the_event(api):
    code, body = http_error(f"{api}/api/timecourse/cage/c2?event=surgery")
    assert code == 400 and "no 'surgery' event" in body["detail"]
    assert time.time() > DAY0  # the fixture's study lies in the past


def test_no_page_needs_the_internet(api):
    code, _ = http_error(f"{api}/docs")
    assert code == 404  # FastAPI's Swagger UI would load its scripts from a CDN
    assert "cdn" not in get_text(f"{api}/openapi.json").lower()
