"""Blinded scoring in real headless Chromium: a rater logs in, scores 20 faces with the keyboard only,
and nothing the browser holds or receives (DOM, URLs, response bodies and headers, image bytes) names
the cage, animal, group, device, capture time or the model's score. Then the agreement page shows the
numbers the API returns, and draws its plots. Screenshots go to test-artifacts/screenshots."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import sqlite_utils

from amgs.contract import AU_KEYS
from amgs.server.http.app import create_app
from amgs.server.rating import sessions
from amgs.server.rating.pool import fill_pool
from amgs.server.rating.sampling import local_day_bounds
from amgs.server.web import auth
from tests.rating_helpers import REVEALING_COMMENT, add_score, open_db
from tests.server_support import server_config
from tests.web_helpers import ARTIFACTS, Served, launch_chromium

pytestmark = [pytest.mark.browser, pytest.mark.slow]
playwright_api = pytest.importorskip("playwright.sync_api")

DAY = dt.date(2026, 3, 2)
T0, _ = local_day_bounds(DAY, "UTC")
NOW = T0 + 86400 + 3600
CAGES = ("CAGE-SECRET-7", "CAGE-SECRET-8")
SECRETS = [
    *CAGES,
    "ANIMAL-M7",
    "ANIMAL-M8",
    "GROUP-LAPAROTOMY",
    "DEVICE-BOX3",
    "MODEL-NAME-X",
    "9.8.7",
    "2026-03-0",
]
SECRETS += [str(int(T0))[:6], REVEALING_COMMENT.decode()[:12]]
# each face: five units (3 = not visible) then Enter; face 5 is "not scorable" (9)
KEYS = [
    ["1", "0", "2", "3", "1"],
    ["2", "2", "1", "1", "0"],
    ["0", "0", "0", "0", "0"],
    ["1", "1", "1", "1", "1"],
]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rating-browser")
    config = server_config(
        tmp, notify={"mqtt": {"enabled": False}}, rating={"per_cage_per_day": 12, "repeat_share": 0.0}
    )
    db = open_db(config)
    conn = db.local().conn
    for cage, animal in zip(CAGES, ("ANIMAL-M7", "ANIMAL-M8"), strict=True):
        conn.execute(
            "INSERT INTO animals (animal_id, cage_id, group_id, housing) VALUES (?, ?, 'GROUP-LAPAROTOMY', 'single')",
            [animal, cage],
        )
        for i in range(40):
            add_score(
                conn,
                config.storage.state_dir,
                f"{cage}-msg{i}",
                cage,
                T0 + i * 2100,
                (i % 10) / 10,
                device="DEVICE-BOX3",
                animal=animal,
                model_name="MODEL-NAME-X",
                model_version="9.8.7",
            )
        add_score(conn, config.storage.state_dir, f"{cage}-next", cage, T0 + 86400 + 60, 0.1, crop=False)
    assert fill_pool(conn, config, now=NOW)["added"] == 24
    app = create_app(config, db)
    served = Served(app)
    udb = sqlite_utils.Database(config.storage.db_path)
    auth.add_user(udb, "ann", "rater password 1", role="rater")
    yield served.base, conn, config
    served.stop()
    udb.close()


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


def test_rater_scores_20_faces_by_keyboard_and_nothing_unblinds(site, browser):
    base, conn, _ = site
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    errors, urls, bodies = [], [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: urls.append(r.url))

    def on_response(resp):
        try:
            body = resp.body()
        except Exception:  # redirects have no body
            body = b""
        bodies.append((resp.url, resp.headers, body))

    page.on("response", on_response)
    page.goto(f"{base}/rate")
    assert "/login" in page.url
    page.fill("input[name=username]", "ann")
    page.fill("input[name=password]", "rater password 1")
    page.keyboard.press("Enter")  # the login form, by keyboard too
    page.wait_for_url(re.compile(r".*/rate$"))
    page.wait_for_function(
        "Number(document.body.dataset.ready || 0) >= 1 && document.body.dataset.pos === '0'"
    )
    expected = []
    for face in range(20):
        ready = page.evaluate("Number(document.body.dataset.ready)")
        if face == 5:
            page.keyboard.press("9")
            expected.append(None)
        else:
            keys = KEYS[face % len(KEYS)]
            for k in keys:
                page.keyboard.press(k)
            expected.append([None if k == "3" else int(k) for k in keys])
        if face == 7:  # a slip: go back one face, correct it, come forward again
            page.keyboard.press("Enter")
            page.wait_for_function(f"Number(document.body.dataset.ready) > {ready}")
            ready = page.evaluate("Number(document.body.dataset.ready)")
            page.keyboard.press("ArrowLeft")
            page.wait_for_function(
                f"document.body.dataset.pos === '{face}' && Number(document.body.dataset.ready) > {ready}"
            )
            ready = page.evaluate("Number(document.body.dataset.ready)")
            assert page.locator("#r-units tr.done").count() == 5  # the values entered are shown again
            for k in ["2", "2", "2", "2", "2"]:
                page.keyboard.press(k)
            expected[-1] = [2, 2, 2, 2, 2]
        page.keyboard.press("Enter")
        page.wait_for_function(
            f"document.body.dataset.pos === '{face + 1}' && Number(document.body.dataset.ready) > {ready}"
        )
        if face == 0:
            page.screenshot(path=str(ARTIFACTS / "rate-face.png"))
    progress = page.inner_text("#r-progress")
    assert progress.startswith("20 of 24 scored")
    page.keyboard.press("Escape")
    page.wait_for_url(re.compile(r".*/rate/stopped$"))

    # what was stored is what was typed, in the order shown
    rows = conn.execute(
        f"SELECT r.unscorable, {', '.join('r.au_' + k for k in AU_KEYS)} FROM rater_queue q "
        "JOIN ratings r ON r.rating_id = q.rating_id WHERE r.rater = 'ann' ORDER BY q.pos"
    ).fetchall()
    assert len(rows) == 20
    for got, want in zip(rows, expected, strict=True):
        assert (got[0] == 1 and want is None) or (got[0] == 0 and list(got[1:]) == want)
    assert conn.execute("SELECT count(*) FROM rating_changes").fetchone()[0] == 1
    assert all(d is not None and d > 0 for (d,) in conn.execute("SELECT duration_ms FROM ratings"))

    # nothing unblinds: DOM, every URL, every response body and header, every image
    dom = page.evaluate("document.documentElement.outerHTML")
    context.close()
    assert not errors, errors
    assert urls and bodies
    images = 0
    for url, headers, body in bodies:
        if "/static/" not in url:  # the page and its data: no file times, nothing cached
            assert "last-modified" not in headers and "etag" not in headers
        text = body.decode("latin-1")
        for s in SECRETS:
            assert s not in url and s not in text and s not in json.dumps(headers), (s, url)
        if "/api/rating/image/" in url:
            images += 1
            assert body[:2] == b"\xff\xd8" and b"Exif" not in body and b"\xff\xfe" not in body
        elif "/api/rating/" in url:
            data = json.loads(body)
            assert set(data) == {"pos", "total", "done", "token", "values"}
    assert images >= 21
    for s in SECRETS:
        assert s not in dom
    for url in urls:
        path = url.split("?")[0]
        assert re.fullmatch(
            r".*/(rate|rate/stopped|login|static/[\w/.-]+|api/rating/(session|session/\d+|rate/[\w-]+|image/[\w-]+))",
            path,
        ), url


def test_agreement_page_shows_the_api_numbers(site, browser):
    base, conn, config = site
    for name in ("bob", "cat"):  # two more raters (through the same sessions) so every figure exists
        ref = sessions.open_session(conn, name, config.rating.model_copy(update={"raters_per_item": 5}), NOW)
        while (v := sessions.view(conn, ref))["token"]:
            item = conn.execute(
                "SELECT p_pain FROM rating_items i JOIN rater_queue q USING (item_id) WHERE q.token = ?",
                [v["token"]],
            ).fetchone()[0]
            level = min(2, round(2 * item + (0.4 if name == "cat" else 0)))
            sessions.submit(
                conn, ref, v["token"], dict.fromkeys(AU_KEYS, level), raters_per_item=5, now=NOW + 99
            )
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    for by in ("all", "cage_id"):
        page.goto(f"{base}/agreement?by={by}")
        page.wait_for_function("Number(document.body.dataset.ready || 0) >= 1")
        api = page.evaluate(f"fetch('/api/rating/agreement?by={by}').then(r => r.json())")
        assert len(api["groups"]) == (1 if by == "all" else 2)
        for g in api["groups"]:
            mh = g["model_vs_human"]
            want = {
                "pearson_r": mh["pearson"]["r"],
                "icc_a1": mh["icc_a1"]["icc"],
                "ba_bias": mh["bland_altman"]["bias"],
                "ba_loa_high": mh["bland_altman"]["loa_high"],
                "pain_kappa": mh["pain"]["kappa"]["kappa"],
                "accuracy": mh["pain"]["accuracy"]["value"],
                "icc_2_1": g["inter_rater"]["icc2"]["icc"],
            }
            for metric, value in want.items():
                cell = page.locator(f'td[data-key="{g["key"]}"][data-metric="{metric}"]')
                shown = cell.inner_text()
                assert shown == ("-" if value is None else f"{value:.3f}"), (by, g["key"], metric)
            n_cell = page.locator(f'td[data-key="{g["key"]}"][data-n="icc_a1"]').inner_text()
            assert int(n_cell) == mh["icc_a1"]["n"] > 0
            assert g["inter_rater"]["icc2"]["icc"] is not None
        assert page.locator("canvas").count() >= 2 * len(api["groups"])  # scatter + Bland-Altman each
        page.screenshot(path=str(ARTIFACTS / f"agreement-{by}.png"), full_page=True)
    # a time window: faces captured before 2026-03-02 (none) and from it (all)
    page.goto(f"{base}/agreement?by=all&to=2026-03-02")
    page.wait_for_function("Number(document.body.dataset.ready || 0) >= 1")
    assert page.locator("#a-none").count() == 1
    page.goto(f"{base}/agreement?by=all&from=2026-03-02&to=2026-03-03")
    page.wait_for_function("Number(document.body.dataset.ready || 0) >= 1")
    assert page.locator('td[data-key="all"][data-metric="icc_a1"]').count() == 1
    context.close()
    assert not errors, errors
