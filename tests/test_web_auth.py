"""Dashboard access over real HTTP (uvicorn): open or login-only viewing, Argon2 passwords, sessions that
expire, CSRF on state changes, API tokens, and roles.

Engine-neutral: the database comes from :func:`server_config` and is used through ``db.local()`` with plain
SQL, so tests/test_pg_web.py collects these tests again on PostgreSQL (pointing ``server_config`` there).
"""

from __future__ import annotations

import re
import time

import pytest

from amgs.server.alerts.rules import Condition
from amgs.server.config import parse_config
from amgs.server.http.app import create_app
from amgs.server.storage.db import open_database
from amgs.server.web import auth
from tests.web_helpers import Served, http

PAIN = Condition(
    "sustained_pain", "lab1", "C01", "alert", "sustained pain in cage C01", 0.7, 0.5, "M1", "dev1"
)


def server_config(tmp_path, **sections):
    """The collector's config for a test (SQLite under tmp_path; tests/test_pg_web.py adds storage.url)."""
    data = {"storage": {"state_dir": str(tmp_path / "state")}, "http": {"port": 0}}
    data["notify"] = {"mqtt": {"enabled": False}}
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return parse_config(data)


def q(db, sql: str, params=()) -> list[tuple]:
    return [tuple(r) for r in db.execute(sql, params).fetchall()]


@pytest.fixture
def site(tmp_path, request):
    config = server_config(tmp_path, web=getattr(request, "param", {}))
    db = open_database(config)
    app = create_app(config, db)
    served = Served(app)
    udb = db.local()
    auth.add_user(udb, "vet", "correct horse battery", role="staff")
    auth.add_user(udb, "guest", "viewer password 1", role="viewer")
    yield served.base, udb, app
    served.stop()


@pytest.fixture
def alert_id(site):
    """An open alert (the state-changing requests of these tests acknowledge or resolve it)."""
    _, udb, app = site
    app.state.alert_engine.apply([PAIN])
    return q(udb, "SELECT alert_id FROM alerts")[0][0]


def login(base: str, user: str, password: str) -> tuple[int, str | None, str]:
    status, headers, page = http("GET", f"{base}/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page).group(1)
    cookie = headers["Set-Cookie"].split(";")[0]
    status, headers, _ = http(
        "POST",
        f"{base}/login",
        form={"username": user, "password": password, "login_csrf": token, "next": "/alerts"},
        headers={"Cookie": cookie},
    )
    session = None
    for value in headers.get_all("Set-Cookie") or []:
        if value.startswith(auth.SESSION_COOKIE + "="):
            session = value.split(";")[0]
    return status, session, headers.get("Location", "")


def csrf_of(base: str, session: str) -> str:
    _, _, page = http("GET", f"{base}/alerts", headers={"Cookie": session})
    return re.search(r'name="csrf-token" content="([^"]*)"', page).group(1)


def test_passwords_are_argon2_hashes_and_bad_input_is_refused(site):
    _, udb, _ = site
    (stored,) = q(udb, "SELECT password_hash FROM web_users WHERE username = 'vet'")[0]
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    with pytest.raises(auth.AuthError, match="at least 8"):
        auth.add_user(udb, "x", "short")
    with pytest.raises(auth.AuthError, match="role"):
        auth.add_user(udb, "x", "long enough pw", role="root")


def test_viewing_is_open_but_acting_needs_staff_login_and_csrf(site, alert_id):
    base, udb, _ = site
    assert http("GET", f"{base}/api/overview")[0] == 200
    assert http("GET", f"{base}/alerts")[0] == 200
    ack = f"{base}/api/alerts/{alert_id}/acknowledge"
    assert http("POST", ack, {"comment": "x"})[0] == 401

    status, session, location = login(base, "vet", "wrong password")
    assert status == 303 and session is None and "error=" in location
    status, session, location = login(base, "vet", "correct horse battery")
    assert status == 303 and session and location == "/alerts"

    # The session cookie alone is not enough: a cross-site form post carries it but not the CSRF token.
    status, _, body = http("POST", ack, {"comment": "x"}, headers={"Cookie": session})
    assert status == 403 and "CSRF" in body["detail"]
    status, _, body = http(
        "POST", ack, {"comment": "x"}, headers={"Cookie": session, "X-CSRF-Token": "guess"}
    )
    assert status == 403
    token = csrf_of(base, session)
    status, _, body = http(
        "POST", ack, {"comment": "analgesic given"}, headers={"Cookie": session, "X-CSRF-Token": token}
    )
    assert status == 200 and body["acknowledged_by"] == "vet" and body["ack_comment"] == "analgesic given"
    status, _, body = http("POST", ack, {}, headers={"Cookie": session, "X-CSRF-Token": token})
    assert status == 409 and "acknowledged" in body["detail"]

    # Logging out ends the session on the server, not only in the browser.
    status, _, _ = http("POST", f"{base}/logout", form={"csrf_token": token}, headers={"Cookie": session})
    assert status == 303
    resolve = f"{base}/api/alerts/{alert_id}/resolve"
    assert http("POST", resolve, {}, headers={"Cookie": session, "X-CSRF-Token": token})[0] == 401


def test_tokens_roles_and_expiry(site, alert_id):
    base, udb, _ = site
    resolve = f"{base}/api/alerts/{alert_id}/resolve"
    viewer = auth.create_token(udb, "guest", "wallboard")
    assert http("POST", resolve, {}, headers={"Authorization": f"Bearer {viewer}"})[0] == 403
    assert http("POST", resolve, {}, headers={"Authorization": "Bearer amgs_forged"})[0] == 401
    staff = auth.create_token(udb, "vet", "script")
    status, _, body = http(
        "POST", resolve, {"comment": "euthanized at endpoint"}, headers={"Authorization": f"Bearer {staff}"}
    )
    assert status == 200 and body["state"] == "resolved" and body["resolved_by"] == "vet"
    stored = q(udb, "SELECT token_sha256, last_used_at FROM web_tokens")
    assert len(stored) == 2 and all(not sha.startswith("amgs_") for sha, _ in stored)

    session, csrf = auth.create_session(udb, "vet", hours=1 / 3600)  # expires after one second
    time.sleep(1.2)
    status, _, _ = http(
        "POST", resolve, {}, headers={"Cookie": f"{auth.SESSION_COOKIE}={session}", "X-CSRF-Token": csrf}
    )
    assert status == 401


def test_metadata_writes_need_a_login(site):
    base, udb, _ = site
    assert http("POST", f"{base}/api/meta/sites", {"site_id": "s2"})[0] == 401
    staff = auth.create_token(udb, "vet", "script")
    assert (
        http(
            "POST", f"{base}/api/meta/sites", {"site_id": "s2"}, headers={"Authorization": f"Bearer {staff}"}
        )[0]
        == 200
    )


@pytest.mark.parametrize("site", [{"view_requires_login": True}], indirect=True)
def test_login_required_for_viewing_when_configured(site):
    base, _, _ = site
    status, headers, _ = http("GET", f"{base}/alerts")
    assert status == 303 and headers["Location"] == "/login?next=/alerts"
    assert http("GET", f"{base}/api/overview")[0] == 401
    assert http("GET", f"{base}/api/overview")[0] == 401  # the collector's own API follows the same rule
    _, session, _ = login(base, "guest", "viewer password 1")
    assert http("GET", f"{base}/api/overview", headers={"Cookie": session})[0] == 200


def test_login_form_refuses_a_forged_post(site):
    base, _, _ = site
    status, _, body = http(
        "POST",
        f"{base}/login",
        form={"username": "vet", "password": "correct horse battery", "login_csrf": "x"},
    )
    assert status == 403 and "CSRF" in body["detail"]
    status, headers, _ = login(base, "vet", "correct horse battery")
    assert status == 303


def test_user_cli_adds_lists_tokens_and_disables(tmp_path):
    from click.testing import CliRunner

    from amgs.cli import main

    config = server_config(tmp_path)
    storage = config.storage
    toml = tmp_path / "server.toml"
    toml.write_text(
        f'[storage]\nstate_dir = "{storage.state_dir}"\n'
        + (f'url = "{storage.url}"\n' if storage.url else "")
    )
    run = lambda *args: CliRunner().invoke(main, ["server", "user", *args, "--config", str(toml)])  # noqa: E731
    assert run("add", "vet", "--password", "long password 1").exit_code == 0
    token = run("token", "vet").output.strip()
    assert token.startswith("amgs_")
    assert run("list").output.split() == ["vet", "staff"]
    bad = run("add", "x", "--password", "short")
    assert bad.exit_code != 0 and "at least 8" in bad.output
    assert "no user 'nobody'" in run("token", "nobody").output
    udb = open_database(config).local()  # the database the CLI used
    assert auth.check_password(udb, "vet", "long password 1")["role"] == "staff"
    assert run("disable", "vet").exit_code == 0
    assert auth.check_password(udb, "vet", "long password 1") is None  # disabled


def test_bad_dashboard_queries_get_clear_answers(site):
    base, _, _ = site
    status, _, body = http("GET", f"{base}/api/timecourse/groups")
    assert status == 400 and "at least one group" in body["detail"]
    status, _, body = http("GET", f"{base}/api/timecourse/groups?group=nobody")
    assert status == 400 and "does not exist" in body["detail"]
    status, _, body = http("GET", f"{base}/api/timecourse/cage/C01?bin=7m")
    assert status == 400 and "multiple of 5 min" in body["detail"]
    status, _, body = http("GET", f"{base}/api/timecourse/cage/C01?event=surgery")
    assert status == 400 and "no 'surgery' event" in body["detail"]
    assert http("GET", f"{base}/cages/nowhere")[0] == 404
    assert http("GET", f"{base}/api/crops/{'0' * 32}")[0] == 404
    assert http("POST", f"{base}/api/alerts/nope/acknowledge", {}, headers={})[0] == 401


@pytest.mark.parametrize("site", [{"enabled": False}], indirect=True)
def test_dashboard_off_leaves_the_api_with_its_access_rules(site, alert_id):
    """[web] enabled = false: no pages, log-in or static files; the API answers, tokens still act."""
    base, udb, _ = site
    for path in ("/", "/alerts", "/login", "/static/js/common.js"):
        assert http("GET", f"{base}{path}")[0] == 404, path
    assert (
        http("POST", f"{base}/login", form={"username": "vet", "password": "x", "login_csrf": "x"})[0] == 404
    )
    assert http("GET", f"{base}/api/overview")[0] == 200
    status, _, spec = http("GET", f"{base}/openapi.json")
    assert status == 200 and "/api/alerts/{alert_id}/acknowledge" in spec["paths"]
    ack = f"{base}/api/alerts/{alert_id}/acknowledge"
    assert http("POST", ack, {"comment": "x"})[0] == 401
    staff = auth.create_token(udb, "vet", "script")
    status, _, body = http("POST", ack, {"comment": "seen"}, headers={"Authorization": f"Bearer {staff}"})
    assert status == 200 and body["acknowledged_by"] == "vet"


def test_api_validation_errors_name_the_parameter(site):
    base, _, _ = site
    status, _, body = http("GET", f"{base}/api/overview?hours=zero")
    assert status == 400 and body["detail"].startswith("hours:")
    status, _, body = http("GET", f"{base}/api/alerts?state=lost")
    assert status == 400 and body["detail"].startswith("state:")


def test_every_response_carries_the_security_headers(site):
    base, _, _ = site
    for path in ("/", "/login", "/api/overview", "/api/nowhere", "/static/js/common.js"):
        _, headers, _ = http("GET", f"{base}{path}")
        assert headers["X-Frame-Options"] == "DENY" and headers["X-Content-Type-Options"] == "nosniff", path
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp, path
