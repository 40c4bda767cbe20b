"""Times and bins in query strings: every endpoint that takes them answers 400 naming the parameter for
values that parse but cannot be used (NaN, infinities, far past or future), never a 500 with a traceback."""

from __future__ import annotations

import urllib.parse

import pytest

from amgs.server.config import parse_config
from amgs.server.http.app import create_app
from amgs.server.query.metadata import save
from amgs.server.storage.db import open_database
from amgs.server.web import auth
from tests.web_helpers import Served, http

BAD_TIMES = [
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e400",
    "-99999999999",
    "1e18",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "-1",
]
STAFF: dict[str, str] = {}
BAD_BINS = ["99999999999999999999d", "0", "-5m", "nan", "1e18"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("params")
    config = parse_config(
        {"storage": {"state_dir": str(tmp / "state")}, "notify": {"mqtt": {"enabled": False}}}
    )
    db = open_database(config)
    conn = db.local().conn
    save(conn, "groups", {"group_id": "lap"})
    save(conn, "cages", {"cage_id": "c1"})
    save(conn, "animals", {"animal_id": "m1", "cage_id": "c1", "group_id": "lap", "housing": "single"})
    save(
        conn, "events", {"kind": "surgery", "at": "2026-03-02T10:00:00Z", "animal_id": "m1", "cage_id": "c1"}
    )
    app = create_app(config, db)  # creates the account tables
    auth.add_user(db.local(), "vet", "correct horse battery", role="staff")
    STAFF["Authorization"] = "Bearer " + auth.create_token(db.local(), "vet", "test")
    served = Served(app)
    yield served.base
    served.stop()


TIME_ENDPOINTS = [
    "/api/timecourse/cage/c1?",
    "/api/timecourse/animal/m1?",
    "/api/timecourse/cage/c1?event=surgery&",
    "/api/timecourse/group/lap?event=&",
    "/api/timecourse/groups?group=lap&event=&",
    "/api/scores?",
    "/api/export/scores.csv?",
]


@pytest.mark.parametrize("value", BAD_TIMES)
@pytest.mark.parametrize("param", ["start", "end"])
@pytest.mark.parametrize("endpoint", TIME_ENDPOINTS)
def test_unusable_times_get_400_naming_the_parameter(base, endpoint, param, value):
    status, _, body = http("GET", f"{base}{endpoint}{param}={urllib.parse.quote(value)}")
    assert status == 400, (status, body)
    assert body["detail"].startswith(f"{param}:"), body


BIN_ENDPOINTS = [
    "/api/timecourse/cage/c1?",
    "/api/timecourse/animal/m1?",
    "/api/timecourse/group/lap?",
    "/api/timecourse/groups?group=lap&",
]


@pytest.mark.parametrize("value", BAD_BINS)
@pytest.mark.parametrize("endpoint", BIN_ENDPOINTS)
def test_unusable_bins_get_400_naming_the_parameter(base, endpoint, value):
    status, _, body = http("GET", f"{base}{endpoint}bin={urllib.parse.quote(value)}")
    assert status == 400, (status, body)
    assert body["detail"].startswith("bin:"), body


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e400", "-1", "1e18"])
@pytest.mark.parametrize(
    "query",
    [
        "/api/timecourse/cage/c1?hours={}",
        "/api/timecourse/cage/c1?event=surgery&hours_before={}",
        "/api/timecourse/cage/c1?event=surgery&hours_after={}",
        "/api/timecourse/cage/c1?event=surgery&baseline_h={}",
        "/api/timecourse/group/lap?hours_before={}",
        "/api/timecourse/group/lap?hours_after={}",
        "/api/timecourse/groups?group=lap&hours_after={}",
        "/api/overview?hours={}",
        "/api/scores?limit={}",
    ],
)
def test_other_numbers_are_refused_with_400_naming_the_parameter(base, query, value):
    status, _, body = http("GET", base + query.format(urllib.parse.quote(value)))
    name = query.split("?")[1].split("&")[-1].split("=")[0]
    assert status == 400, (status, body)
    assert name in body["detail"], body


def test_good_values_still_work(base):
    for path in (
        "/api/timecourse/cage/c1?start=2026-03-01T00:00:00Z&end=1772409600&bin=1h",
        "/api/timecourse/cage/c1?event=surgery&hours_before=6&hours_after=6&bin=5m",
        "/api/timecourse/animal/m1?start=1772323200&end=2026-03-03T00:00:00%2B01:00",
        "/api/scores?start=0&end=2026-03-03T00:00:00Z",
        "/api/timecourse/groups?group=lap&bin=1d",
    ):
        status, _, body = http("GET", base + path)
        assert status == 200, (path, body)


def test_metadata_times_outside_what_a_time_course_can_show_are_refused(base):
    for kind, record, name in (
        ("events", {"kind": "surgery", "at": "9999-12-31T23:59:59Z", "cage_id": "c1"}, "at"),
        ("events", {"kind": "surgery", "at": "0001-01-01T00:00:00Z", "cage_id": "c1"}, "at"),
        ("assignments", {"device_id": "d1", "cage_id": "c1", "start": "9999-12-31T23:59:59Z"}, "start"),
        (
            "assignments",
            {"device_id": "d1", "cage_id": "c1", "start": "2026-01-01", "end": "9999-12-31"},
            "end",
        ),
    ):
        status, _, body = http("POST", f"{base}/api/meta/{kind}", record, headers=STAFF)
        assert status == 400 and body["detail"].startswith(f"{name} = "), body


def test_an_event_stored_before_those_checks_gets_a_400_not_a_500(tmp_path):
    config = parse_config(
        {"storage": {"state_dir": str(tmp_path / "state")}, "notify": {"mqtt": {"enabled": False}}}
    )
    db = open_database(config)
    conn = db.local().conn
    save(conn, "groups", {"group_id": "lap"})
    save(conn, "cages", {"cage_id": "c9"})
    save(conn, "animals", {"animal_id": "m9", "cage_id": "c9", "group_id": "lap"})
    conn.execute(  # as an older collector could store it
        "INSERT INTO events (kind, t, at, cage_id, animal_id) VALUES ('surgery', 253402300799, '9999-12-31', 'c9', 'm9')"
    )
    served = Served(create_app(config, db))
    try:
        for path in ("/api/timecourse/cage/c9?event=surgery", "/api/timecourse/animal/m9?event=surgery",
                     "/api/timecourse/cage/c9?baseline_h=24"):  # fmt: skip
            status, _, body = http("GET", served.base + path)
            assert status == 400 and body["detail"].startswith("event:"), (path, body)
        status, _, body = http("GET", served.base + "/api/timecourse/group/lap")
        assert status == 200 and body["skipped"][0]["animal_id"] == "m9"
    finally:
        served.stop()
