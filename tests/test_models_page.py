"""The dashboard's Models page over real HTTP (uvicorn): staff promote or abandon a device's candidate
through a confirmation step (CSRF-protected form), viewers see the state without buttons and cannot post,
and the page and the API show the agreement of each model version with human ratings."""

from __future__ import annotations

import re

import pytest
from lab_helpers import variant_of

from amgs.contract import AU_KEYS
from amgs.server.http.app import create_app
from amgs.server.models import registry
from amgs.server.storage.db import open_database
from amgs.server.web import auth
from tests.test_web_auth import login, server_config
from tests.web_helpers import ARTIFACTS, Served, http, launch_chromium

HUMAN = [0, 0, 1, 1, 2, 2, 0, 1, 2, 1, 0, 2]  # every unit, both raters: human MGS of the 12 faces
ACTIVE_AU = [0.2, 0.1, 0.9, 1.3, 1.8, 1.6, 0.5, 0.7, 1.9, 1.2, 0.3, 1.5]


@pytest.fixture
def site(tmp_path, model_path):
    config = server_config(tmp_path)  # engine-neutral: tests/test_pg_web.py runs these on PostgreSQL too
    db = open_database(config)
    conn = db.local().conn
    a = registry.add_model(conn, tmp_path / "models", variant_of(model_path, tmp_path / "a", "1.0.0"))
    b = registry.add_model(conn, tmp_path / "models", variant_of(model_path, tmp_path / "b", "2.0.0"))
    for dev in ("dev1", "dev2"):
        conn.execute("INSERT INTO devices (device_id, site) VALUES (?, 'lab1')", [dev])
        registry.assign(conn, dev, active=a["sha256"], candidate=b["sha256"])
    shadow = []
    for i, (h, m) in enumerate(zip(HUMAN, ACTIVE_AU, strict=True)):
        msg = f"{i:032x}"
        cage = "C1" if i < 8 else "C2"
        conn.execute(
            "INSERT INTO rating_items (msg_id, sampled_at, day, stratum, t, site, device_id, cage_id, model_name, "
            "model_version, model_sha256, p_pain, is_pain, mgs_au) VALUES (?, 0, '2026-03-02', 'x', ?, 'lab1', "
            "'dev1', ?, 'lab-mgs', '1.0.0', ?, ?, ?, ?)",
            [msg, 1000.0 + i, cage, a["sha256"], m / 2, int(m >= 1), m],
        )
        item = conn.execute("SELECT item_id FROM rating_items WHERE msg_id = ?", [msg]).fetchone()[0]
        for rater in ("ann", "bob"):
            conn.execute(
                f"INSERT INTO ratings (item_id, rater, rated_at, {', '.join('au_' + k for k in AU_KEYS)}) "
                "VALUES (?, ?, 1, ?, ?, ?, ?, ?)",
                [item, rater, *[h] * 5],
            )
        row = {"msg_id": msg, "device_id": "dev1", "cage_id": cage, "animal_id": None, "seq": i, "t": 1000.0 + i,
               "model_sha256": a["sha256"], "p_pain": m / 2, "label": "pain" if m >= 1 else "no pain",
               "mgs_au": m, "inference_ms": 40.0}  # fmt: skip
        ref = {"name": "lab-mgs", "version": "2.0.0", "sha256": b["sha256"]}
        cand = {"model": ref, "p_pain": h / 2, "label": "pain" if h >= 1 else "no pain", "mgs_au": float(h),
                "inference_ms": 30.0}  # fmt: skip
        shadow.append(({"shadow": cand}, row))
    registry.store_shadow(conn, shadow)
    app = create_app(config, db)
    served = Served(app)
    auth.add_user(conn, "vet", "correct horse battery", role="staff")
    auth.add_user(conn, "guest", "viewer password 1", role="viewer")
    yield served.base, conn, a["sha256"], b["sha256"]
    served.stop()


def session_of(base, user, password):
    status, session, _ = login(base, user, password)
    assert status == 303 and session
    return session


def form_of(page: str) -> dict[str, str]:
    form = page[page.index('id="confirm-form"') :]
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form))


def assignment(conn, device):
    return conn.execute(
        "SELECT active_sha256, candidate_sha256 FROM model_assignments WHERE device_id = ?", [device]
    ).fetchone()


def test_staff_promote_through_a_confirmation_step_and_see_the_event(site):
    base, conn, a, b = site
    vet = session_of(base, "vet", "correct horse battery")
    status, _, page = http("GET", f"{base}/models", headers={"Cookie": vet})
    assert status == 200 and 'href="/models/promote/confirm?device_id=dev1"' in page
    assert 'href="/models/abandon/confirm?device_id=dev2"' in page

    status, _, page = http("GET", f"{base}/models/promote/confirm?device_id=dev1", headers={"Cookie": vet})
    assert status == 200 and "lab-mgs 2.0.0</b> becomes the active model of <b>dev1" in page
    fields = form_of(page)
    assert fields["device_id"] == "dev1" and fields["candidate_sha256"] == b and fields["csrf_token"]
    assert "<td>C1</td><td>8</td>" in page  # the device's shadow agreement per cage

    # a stray click: nothing typed, or the wrong device, changes nothing
    for typed in ("", "dev2"):
        status, _, page = http(
            "POST", f"{base}/models/promote", form={**fields, "confirm": typed}, headers={"Cookie": vet}
        )
        assert status == 400 and "Type the device id" in page and 'id="confirm-form"' in page
    assert assignment(conn, "dev1") == (a, b)
    # a candidate other than the one shown is not promoted
    status, _, page = http(
        "POST",
        f"{base}/models/promote",
        form={**fields, "candidate_sha256": a, "confirm": "dev1"},
        headers={"Cookie": vet},
    )
    assert status == 409 and "changed after the confirmation page" in page

    status, headers, _ = http(
        "POST", f"{base}/models/promote", form={**fields, "confirm": "dev1"}, headers={"Cookie": vet}
    )
    assert status == 303
    assert assignment(conn, "dev1") == (b, None) and assignment(conn, "dev2") == (a, b)
    event_id, action, by = conn.execute(
        "SELECT id, action, detail FROM model_events WHERE device_id = 'dev1' AND action = 'promoted'"
    ).fetchone()
    assert by == "vet" and headers["Location"] == f"/models?event={event_id}#model-devices"
    status, _, page = http("GET", f"{base}/models?event={event_id}", headers={"Cookie": vet})
    assert (
        status == 200 and f"Promoted: lab-mgs 2.0.0 is now the active model on dev1 (event {event_id}" in page
    )
    assert 'href="/models/promote/confirm?device_id=dev1"' not in page  # no candidate left on dev1

    # again (a second tab, a reload): a clear message, not a crash
    status, _, page = http(
        "POST", f"{base}/models/promote", form={**fields, "confirm": "dev1"}, headers={"Cookie": vet}
    )
    assert status == 409 and "has no candidate model to promote" in page
    status, _, page = http("GET", f"{base}/models/abandon/confirm?device_id=nope", headers={"Cookie": vet})
    assert status == 404 and "No device &#39;nope&#39; is known" in page
    status, _, page = http(
        "POST",
        f"{base}/models/abandon",
        form={**fields, "device_id": "nope", "confirm": "nope"},
        headers={"Cookie": vet},
    )
    assert status == 404 and "is known to this collector" in page

    # abandon dev2's candidate
    _, _, page = http("GET", f"{base}/models/abandon/confirm?device_id=dev2", headers={"Cookie": vet})
    fields = form_of(page)
    status, headers, _ = http(
        "POST", f"{base}/models/abandon", form={**fields, "confirm": "dev2"}, headers={"Cookie": vet}
    )
    assert status == 303 and assignment(conn, "dev2") == (a, None)
    _, _, page = http("GET", base + headers["Location"].split("#")[0], headers={"Cookie": vet})
    assert "Abandoned: lab-mgs 2.0.0 is no longer scored in shadow on dev2" in page

    # the JSON API records who changed it too
    token = auth.create_token(conn, "vet", "script")
    bearer = {"Authorization": f"Bearer {token}"}
    assert http("POST", f"{base}/api/models/assign", {"device_id": "dev2", "candidate": b}, bearer)[0] == 200
    assert http("POST", f"{base}/api/models/abandon", {"device_id": "dev2"}, bearer)[0] == 200
    assert conn.execute("SELECT detail FROM model_events ORDER BY id DESC LIMIT 1 OFFSET 1").fetchone() == (
        "vet",
    )


def test_viewers_see_no_buttons_and_forged_posts_are_refused(site):
    base, conn, a, b = site
    guest = session_of(base, "guest", "viewer password 1")
    for who in ({"Cookie": guest}, {}):
        status, _, page = http("GET", f"{base}/models", headers=who)
        assert status == 200 and "/confirm?device_id=" not in page and "in shadow (staff decide)" in page
    status, _, _ = http("GET", f"{base}/models/promote/confirm?device_id=dev1", headers={"Cookie": guest})
    assert status == 403
    status, headers, _ = http("GET", f"{base}/models/promote/confirm?device_id=dev1")
    assert status == 303 and headers["Location"].startswith("/login?next=/models/promote/confirm")

    _, _, page = http("GET", f"{base}/models", headers={"Cookie": guest})
    guest_csrf = re.search(r'name="csrf-token" content="([^"]*)"', page).group(1)
    forged = {"device_id": "dev1", "candidate_sha256": b, "confirm": "dev1", "csrf_token": guest_csrf}
    status, _, body = http("POST", f"{base}/models/promote", form=forged, headers={"Cookie": guest})
    assert status == 403 and "staff or admin" in body["detail"]
    assert http("POST", f"{base}/models/promote", form=forged)[0] == 401  # nobody logged in

    vet = session_of(base, "vet", "correct horse battery")
    for token in ("", "guess"):  # staff's session cookie without its CSRF token: a cross-site post
        status, _, body = http(
            "POST", f"{base}/models/promote", form={**forged, "csrf_token": token}, headers={"Cookie": vet}
        )
        assert status == 403 and "CSRF" in body["detail"]
    assert assignment(conn, "dev1") == (a, b)
    assert conn.execute("SELECT count(*) FROM model_events WHERE action = 'promoted'").fetchone()[0] == 0


def test_agreement_with_human_ratings_on_the_page_and_in_the_api(site):
    base, _, a, b = site
    status, _, out = http("GET", f"{base}/api/models/human-agreement")
    assert status == 200 and out["human_pain_cutoff"] == 1.0 and out["min_items"] == 10
    (m,) = out["models"]
    assert m["sha256"] == a and m["model"] == "lab-mgs 1.0.0" and m["registered"]
    assert (m["n_items"], m["n_raters"], m["n_scored"]) == (12, 2, 12)
    r = m["pearson_au"]["value"]
    assert 0.8 < r < 1 and m["pearson_au"]["n"] == 12 and not m["pearson_au"]["too_few"]
    listed = {x["sha256"]: x for x in http("GET", f"{base}/api/models")[2]}
    assert listed[a]["human_agreement"]["pearson_au"] == m["pearson_au"]
    assert listed[b]["human_agreement"] is None  # never active: no rated face of its own

    rows = {g["cage_id"]: g for g in out["shadow"]}
    assert set(rows) == {"all", "C1", "C2"} and rows["all"]["candidate"] == "lab-mgs 2.0.0"
    assert rows["all"]["candidate_vs_human"]["pearson_au"]["value"] == pytest.approx(1.0)
    assert rows["all"]["active_vs_human"]["pearson_au"] == m["pearson_au"]
    assert rows["C2"]["candidate_vs_human"]["accuracy"]["too_few"]  # 4 faces

    _, _, page = http("GET", f"{base}/models")
    table = page[page.index('id="human-agreement"') : page.index('id="shadow-human"')]
    assert "lab-mgs 1.0.0" in table and f"{r:.3f}" in table and "<td>12</td><td>2</td>" in table
    acc = m["accuracy"]["value"]
    assert f"{acc:.3f}" in table
    shadow = page[page.index('id="shadow-human"') : page.index('id="model-events"')]
    c2 = shadow[shadow.index('data-cage="C2"') :]
    assert "n &lt; 10: too few" in c2[: c2.index("</tr>")]


def test_devices_fetch_the_registered_files_by_sha256(site):
    import hashlib
    import urllib.request

    base, _, a, _ = site
    with urllib.request.urlopen(f"{base}/device-api/models/{a}.tflite", timeout=30) as r:
        assert hashlib.sha256(r.read()).hexdigest() == a
    status, _, manifest = http("GET", f"{base}/device-api/models/{a}.manifest.json")
    assert status == 200 and manifest["sha256"] == a and manifest["version"] == "1.0.0"
    assert http("GET", f"{base}/device-api/models/{'0' * 64}.tflite")[0] == 404
    assert http("GET", f"{base}/device-api/models/{a}.exe")[0] == 404


def test_model_cli_adds_lists_assigns_and_promotes(tmp_path, model_path):
    """``amgs server model ...`` on the database of the collector's TOML (SQLite, or PostgreSQL in
    tests/test_pg_models.py)."""
    from click.testing import CliRunner

    from amgs.cli import main

    config = server_config(tmp_path)
    storage = config.storage
    toml = tmp_path / "server.toml"
    url = f'url = "{storage.url}"\n' if storage.url else ""
    toml.write_text(f'[storage]\nstate_dir = "{storage.state_dir}"\n{url}')

    def run(*args):
        r = CliRunner().invoke(main, ["server", "model", *args, "--config", str(toml)])
        assert r.exit_code == 0, r.output
        return r.output

    assert "lab-mgs 1.0.0" in run("add", str(variant_of(model_path, tmp_path / "a", "1.0.0")))
    assert "lab-mgs 2.0.0" in run("add", str(variant_of(model_path, tmp_path / "b", "2.0.0")))
    assert "lab-mgs 1.0.0" in run("list") and len(list((storage.state_dir / "models").glob("*.tflite"))) == 2
    conn = open_database(config).local().conn
    conn.execute("INSERT INTO devices (device_id, site) VALUES ('dev1', 'lab1')")
    run("assign", "dev1", "--active", "lab-mgs:1.0.0", "--candidate", "lab-mgs:2.0.0")
    run("promote", "dev1")
    (active,) = conn.execute(
        "SELECT active_sha256 FROM model_assignments WHERE device_id = 'dev1'"
    ).fetchone()
    assert active == registry.find(conn, "lab-mgs:2.0.0")
    assert "no shadow scores yet" in run("agreement")


@pytest.mark.browser
@pytest.mark.slow
def test_in_chromium_staff_promote_after_confirming_and_viewers_see_no_buttons(site):
    playwright_api = pytest.importorskip("playwright.sync_api")
    base, conn, a, b = site
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/login?next=/models")
            page.fill("input[name=username]", "vet")
            page.fill("input[name=password]", "correct horse battery")
            page.keyboard.press("Enter")
            page.wait_for_url(re.compile(re.escape(base) + r"/models$"))
            assert page.locator("#human-agreement tbody tr").count() == 1
            page.screenshot(path=str(ARTIFACTS / "models-staff.png"), full_page=True)
            page.click('a[data-action="promote"][data-device="dev1"]')
            page.wait_for_url(re.compile(re.escape(base) + r"/models/promote/confirm\?device_id=dev1$"))
            page.click("#confirm-form button[type=submit]")  # nothing typed: the browser does not send it
            assert "/confirm" in page.url and assignment(conn, "dev1") == (a, b)
            page.fill("#confirm-form input[name=confirm]", "dev1")
            page.screenshot(path=str(ARTIFACTS / "models-confirm.png"), full_page=True)
            page.click("#confirm-form button[type=submit]")
            page.wait_for_url(re.compile(re.escape(base) + r"/models\?event=\d+#model-devices$"))
            assert "Promoted: lab-mgs 2.0.0" in page.inner_text("#model-notice")
            assert assignment(conn, "dev1") == (b, None)
            row = page.locator("#model-devices tbody tr", has_text="dev1").first.inner_text()
            assert "lab-mgs 2.0.0" in row and "Promote" not in row
            assert "promoted" in page.inner_text("#model-events")
            context.close()
            assert not errors, errors

            context = browser.new_context()
            page = context.new_page()
            page.goto(f"{base}/login?next=/models")
            page.fill("input[name=username]", "guest")
            page.fill("input[name=password]", "viewer password 1")
            page.keyboard.press("Enter")
            page.wait_for_url(re.compile(re.escape(base) + r"/models$"))
            assert page.locator("a[data-action]").count() == 0
            assert "in shadow (staff decide)" in page.inner_text("#model-devices")
            context.close()
        finally:
            browser.close()
