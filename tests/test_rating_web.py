"""Scoring and agreement over real HTTP: who may score, what the blinded responses contain (nothing but
opaque tokens and progress), image headers and bytes, ratings through the API, the agreement JSON, CSV
and the training-set download."""

import csv
import datetime as dt
import io
import re
import urllib.request
import zipfile

import pytest

from amgs.contract import AU_KEYS
from amgs.server.http.app import create_app
from amgs.server.rating.pool import fill_pool
from amgs.server.rating.sampling import local_day_bounds
from amgs.server.web import auth
from tests.rating_helpers import REVEALING_COMMENT, add_score, open_db
from tests.server_support import server_config
from tests.web_helpers import Served, http

DAY = dt.date(2026, 3, 2)
T0, _ = local_day_bounds(DAY, "UTC")
NOW = T0 + 86400 + 3600
VIEW_KEYS = {"pos", "total", "done", "token", "values"}


def get_bytes(url, headers):
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as resp:
        return resp.headers, resp.read()


def add_user(udb, name, password, role):
    auth.add_user(udb, name, password, role=role)


def login(base, user, password):
    _, headers, page = http("GET", f"{base}/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page).group(1)
    cookie = headers["Set-Cookie"].split(";")[0]
    _, headers, _ = http(
        "POST",
        f"{base}/login",
        form={"username": user, "password": password, "login_csrf": token, "next": "/rate"},
        headers={"Cookie": cookie},
    )
    session = next(
        v.split(";")[0] for v in headers.get_all("Set-Cookie") if v.startswith(auth.SESSION_COOKIE)
    )
    _, _, page = http("GET", f"{base}/agreement", headers={"Cookie": session})
    csrf = re.search(r'name="csrf-token" content="([^"]*)"', page).group(1)
    return {"Cookie": session}, {"Cookie": session, "X-CSRF-Token": csrf}


@pytest.fixture
def site(tmp_path):
    config = server_config(tmp_path, notify={"mqtt": {"enabled": False}}, rating={"per_cage_per_day": 6})
    db = open_db(config)
    conn = db.local().conn
    for cage in ("CAGE-SECRET-07", "CAGE-SECRET-08"):
        for i in range(30):
            add_score(
                conn,
                config.storage.state_dir,
                f"{cage}-m{i}",
                cage,
                T0 + i * 2800,
                (i % 10) / 10,
                device="box-03",
            )
        add_score(conn, config.storage.state_dir, f"{cage}-next", cage, T0 + 86400 + 60, 0.1, crop=False)
    fill_pool(conn, config, now=NOW)
    app = create_app(config, db)
    served = Served(app)
    udb = db.local()  # engine-neutral: tests/test_pg_rating.py runs these on PostgreSQL too
    add_user(udb, "ann", "rater password 1", "rater")
    add_user(udb, "bob", "rater password 2", "rater")
    add_user(udb, "vic", "viewer password 1", "viewer")
    add_user(udb, "sam", "staff password 1", "staff")
    yield served.base, conn
    served.stop()


def test_only_raters_score_and_responses_are_blind(site):
    base, conn = site
    assert http("POST", f"{base}/api/rating/session")[0] == 401
    status, headers, _ = http("GET", f"{base}/rate")
    assert status == 303 and "/login" in headers["Location"]
    ann, ann_post = login(base, "ann", "rater password 1")
    assert http("POST", f"{base}/api/rating/session", headers=ann)[0] == 403  # no CSRF token
    status, _, view = http("POST", f"{base}/api/rating/session", body={}, headers=ann_post)
    # 12 faces; the pool's one repeat is shown a second time only when the random order leaves repeat_gap
    # (10) others after its first showing (first at position 0 or 1): 13 in about one session of six
    total = view["total"]
    assert status == 200 and set(view) == VIEW_KEYS and total in (12, 13) and view["pos"] == 0
    secrets = [r[0] for r in conn.execute("SELECT DISTINCT msg_id FROM rating_items")] + [
        "CAGE-SECRET-07",
        "CAGE-SECRET-08",
        "box-03",
    ]
    for _ in range(total):
        token = view["token"]
        headers, raw = get_bytes(f"{base}/api/rating/image/{token}", ann)
        assert headers["Content-Type"] == "image/jpeg" and raw[:2] == b"\xff\xd8"
        assert (
            "Last-Modified" not in headers
            and "ETag" not in headers
            and headers["Cache-Control"] == "no-store"
        )
        assert REVEALING_COMMENT not in raw and b"Exif" not in raw and b"box-03" not in raw
        body = {"au": dict.fromkeys(AU_KEYS, 1), "unscorable": False, "duration_ms": 2500}
        status, _, view = http("POST", f"{base}/api/rating/rate/{token}", body=body, headers=ann_post)
        assert status == 200 and set(view) == VIEW_KEYS
        text = str(view)
        assert not any(s in text for s in secrets)
    assert view["token"] is None and view["done"] == total
    status, _, back = http("GET", f"{base}/api/rating/session/3", headers=ann)
    assert back["values"] == {"unscorable": False, "au": dict.fromkeys(AU_KEYS, 1)}
    # another rater cannot fetch ann's images; bad values are refused
    bob, bob_post = login(base, "bob", "rater password 2")
    assert http("GET", f"{base}/api/rating/image/{back['token']}", headers=bob)[0] in (404, 409)
    status, _, bview = http("POST", f"{base}/api/rating/session", body={}, headers=bob_post)
    status, _, err = http(
        "POST", f"{base}/api/rating/rate/{bview['token']}", body={"au": {"ot": 5}}, headers=bob_post
    )
    assert status == 400 and "five action units" in err["detail"]


def test_viewer_cannot_score(site):
    base, _ = site
    vic, vic_post = login(base, "vic", "viewer password 1")
    assert http("POST", f"{base}/api/rating/session", body={}, headers=vic_post)[0] == 403
    assert http("GET", f"{base}/rate", headers=vic)[0] == 403


def test_agreement_json_csv_and_training_zip(site):
    base, conn = site
    for who, pw, v in (("ann", "rater password 1", 1), ("bob", "rater password 2", 2)):
        _, post = login(base, who, pw)
        _, _, view = http("POST", f"{base}/api/rating/session", body={}, headers=post)
        while view["token"]:
            body = {"au": {**dict.fromkeys(AU_KEYS, v), "ep": None}}
            _, _, view = http("POST", f"{base}/api/rating/rate/{view['token']}", body=body, headers=post)
    status, _, r = http("GET", f"{base}/api/rating/agreement?by=cage_id")
    assert status == 200 and [g["key"] for g in r["groups"]] == ["CAGE-SECRET-07", "CAGE-SECRET-08"]
    assert r["groups"][0]["inter_rater"]["raters"] == ["ann", "bob"]
    n_ratings = conn.execute("SELECT count(*) FROM ratings").fetchone()[0]
    assert r["pool"]["ratings"] == n_ratings >= 24 and r["pool"]["done"] == 12
    status, headers, text = http("GET", f"{base}/api/rating/agreement.csv?by=cage_id")
    rows = list(csv.DictReader(io.StringIO(text)))
    icc = next(
        x
        for x in rows
        if x["key"] == "CAGE-SECRET-07" and x["metric"] == "icc_a1" and x["comparison"] == "model_vs_human"
    )
    mh = r["groups"][0]["model_vs_human"]["icc_a1"]
    assert (float(icc["value"]) if icc["value"] else None) == mh["icc"] and int(icc["n"]) == mh["n"] == 6
    assert http("GET", f"{base}/api/rating/agreement?by=nonsense")[0] == 400
    assert http("GET", f"{base}/api/rating/export.zip")[0] == 401
    _, sam_post = login(base, "sam", "staff password 1")
    _, data = get_bytes(f"{base}/api/rating/export.zip", {"Cookie": sam_post["Cookie"]})
    z = zipfile.ZipFile(io.BytesIO(data))
    names = z.namelist()
    assert "amgs-ratings/au_scores.csv" in names and "amgs-ratings/animals.csv" in names
    assert sum(n.startswith("amgs-ratings/pain/") for n in names) == 12  # mean MGS 1.5 >= cut-off 1
