"""Times and bins in query strings: every endpoint that takes them answers 400 naming the parameter for
values that parse but cannot be used (NaN, infinities, far past or future), never a 500 with a traceback."""

from __future__ import annotations

import urllib.parse

import pytest

from amgs.server.config import parse_config
from amgs.server.http.app import create_app
from amgs.server.query.metadata import save
from amgs.server.storage.db import open_database
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
    served = Served(create_app(config, db))
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
