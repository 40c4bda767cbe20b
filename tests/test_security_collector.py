"""The collector behind the shipped broker config: what an authenticated device can and cannot make it
store, and what an unauthenticated client can do to the dashboard and API (nothing that changes state)."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from deploy_site import (
    Client,
    Proc,
    Site,
    collector_subscribed,
    new_site_root,
    score_message,
    wait_until,
    write_server_toml,
)

from amgs import contract
from amgs.broker import free_port, mosquitto_path

pytestmark = pytest.mark.skipif(
    mosquitto_path() is None or shutil.which("openssl") is None,
    reason="needs mosquitto and openssl (scripts/setup.sh test --system-packages)",
)
SITE = "lab1"
AMGS = str(Path(sys.executable).with_name("amgs"))


@pytest.fixture(scope="module")
def stack():
    root = new_site_root("amgs-col-")
    site = Site(root, site=SITE)
    http_port = free_port()
    # as scripts/install-collector.sh writes it: viewing needs a login too
    write_server_toml(site, root / "collector", http_port, extra="[web]\nview_requires_login = true\n")
    assert site.provision("collector").exit_code == 0
    for name, cage in (("cage-a", "c1"), ("cage-b", "c2")):
        r = site.provision("device", name, "--cage", cage)
        assert r.exit_code == 0, r.output
    site.start()
    collector = Proc(
        [AMGS, "server", "run", "--config", str(site.amgs_etc / "server.toml")], root / "collector.log"
    )
    collector.start()
    base = f"http://127.0.0.1:{http_port}"
    wait_until(lambda: collector_subscribed(base), 60, "collector up and subscribed", proc=collector)
    yield site, base, root / "collector" / "collector.db", collector
    collector.stop()
    site.stop()
    shutil.rmtree(root, ignore_errors=True)


def rows(db: Path, sql: str, args=()) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def device(site: Site, name: str) -> Client:
    c = Client(site.tls_port, name, site.password(name), ca=site.ca)
    assert not c.connect().is_failure
    return c


def test_device_scores_are_stored_and_impersonation_is_quarantined(stack):
    site, _, db, collector = stack
    a = device(site, "cage-a")
    try:
        own = score_message("cage-a", SITE, "c1", 1)
        assert not a.publish(contract.score_topic(SITE, "cage-a"), contract.encode(own)).is_failure
        # cage-a, logged in as itself, sends a record claiming to be cage-b, on its own topic
        forged = score_message("cage-b", SITE, "c2", 1)
        assert not a.publish(contract.score_topic(SITE, "cage-a"), contract.encode(forged)).is_failure
        # and tries cage-b's topic directly: the broker refuses
        assert a.publish(contract.score_topic(SITE, "cage-b"), contract.encode(forged)).is_failure
    finally:
        a.close()
    wait_until(
        lambda: rows(db, "SELECT count(*) FROM quarantine")[0][0] >= 1,
        30,
        "quarantined forgery",
        proc=collector,
    )
    wait_until(
        lambda: rows(db, "SELECT msg_id FROM scores WHERE msg_id = ?", [own["msg_id"]]), 30, "stored score"
    )
    assert rows(db, "SELECT count(*) FROM scores WHERE device_id = 'cage-b'") == [(0,)]
    (topic, reason), *_ = rows(db, "SELECT topic, reason FROM quarantine")
    assert topic == contract.score_topic(SITE, "cage-a")
    assert "cage-b" in reason and "cage-a" in reason


WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _walk(routes, prefix: str = ""):
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI >= 0.120 includes routers lazily
        if included is not None:
            yield from _walk(included.routes, prefix + getattr(route.include_context, "prefix", ""))
        elif hasattr(route, "routes") and not getattr(route, "methods", None):  # a mounted sub-app/router
            yield from _walk(route.routes, prefix + getattr(route, "path", ""))
        else:
            for method in getattr(route, "methods", None) or ():
                yield method, prefix + route.path


def routes_of(base: str, db: Path, methods: set[str]) -> list[tuple[str, str]]:
    """Every route with one of ``methods`` of the collector's app, as the running collector builds it."""
    from amgs.server.config import load_config
    from amgs.server.http.app import create_app
    from amgs.server.storage.db import CollectorDB

    config = load_config(db.parent.parent / "etc-amgs" / "server.toml")
    found = {(m, p) for m, p in _walk(create_app(config, CollectorDB(db)).routes) if m in methods}
    with urllib.request.urlopen(f"{base}/openapi.json", timeout=10) as r:
        documented = {
            (m.upper(), p) for p, ops in json.load(r)["paths"].items() for m in ops if m.upper() in methods
        }
    assert documented <= found, f"route walk missed {documented - found}"
    return sorted(found)


def request(base: str, method: str, path: str, headers: dict | None = None, body: bytes = b"{}"):
    req = urllib.request.Request(base + path, data=body if method != "DELETE" else None, method=method)
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


PUBLIC = {("POST", "/login"), ("POST", "/logout")}  # login itself; logout of nobody changes nothing


def fill(path: str) -> str:
    """Concrete ids for path parameters: ``/api/meta/{kind}`` -> ``/api/meta/sites``, others -> ``c1``."""
    path = path.replace("{kind}", "sites").replace("{key}", SITE).replace("{alert_id}", "1")
    return re.sub(r"\{[^}]+\}", "c1", path)


def test_state_changing_endpoints_refuse_unauthenticated_requests(stack):
    site, base, db, _ = stack
    routes = routes_of(base, db, WRITE_METHODS)
    assert ("POST", "/api/meta/{kind}") in routes, routes
    before = rows(db, "SELECT count(*) FROM sites")
    forged_cookie = {"Cookie": "amgs_session=forged-session-value"}
    bad_token = {"Authorization": "Bearer not-a-token"}
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        for headers in ({}, forged_cookie, bad_token):
            status, hdrs, body = request(base, method, fill(path), headers)
            redirected_to_login = status in (302, 303) and "/login" in (hdrs.get("Location") or "")
            assert status in (401, 403) or redirected_to_login, (method, path, headers, status, body[:200])
    assert rows(db, "SELECT count(*) FROM sites") == before


def test_a_login_is_what_makes_the_difference(stack):
    """The same request with a staff API token succeeds; a viewer's token and a session without CSRF do not."""
    import sqlite_utils

    from amgs.server.web import auth

    _, base, db, _ = stack
    udb = sqlite_utils.Database(db)
    auth.add_user(udb, "vet", "a long staff password 1", role="staff")
    auth.add_user(udb, "guest", "a long viewer password 1", role="viewer")
    staff = auth.create_token(udb, "vet", "test")
    viewer = auth.create_token(udb, "guest", "test")
    session, _csrf = auth.create_session(udb, "vet", 1)
    udb.close()
    body = json.dumps({"site_id": "newsite"}).encode()
    status, _, _ = request(base, "POST", "/api/meta/sites", {"Authorization": f"Bearer {viewer}"}, body)
    assert status == 403
    status, _, _ = request(base, "POST", "/api/meta/sites", {"Cookie": f"amgs_session={session}"}, body)
    assert status == 403  # a cookie alone is not enough: CSRF token missing
    assert rows(db, "SELECT count(*) FROM sites WHERE site_id = 'newsite'") == [(0,)]
    status, _, out = request(base, "POST", "/api/meta/sites", {"Authorization": f"Bearer {staff}"}, body)
    assert status == 200, out
    assert rows(db, "SELECT count(*) FROM sites WHERE site_id = 'newsite'") == [(1,)]


def test_reading_data_needs_a_login_on_an_installed_collector(stack):
    """install-collector.sh sets web.view_requires_login: nobody on the network reads scores anonymously."""
    import sqlite_utils

    from amgs.server.web import auth

    _, base, db, _ = stack
    data_routes = [(m, p) for m, p in routes_of(base, db, {"GET"}) if p.startswith("/api/")]
    assert ("GET", "/api/scores") in data_routes, data_routes
    for method, path in data_routes:
        status, hdrs, body = request(base, method, fill(path), body=b"")
        redirected_to_login = status in (302, 303) and "/login" in (hdrs.get("Location") or "")
        assert status in (401, 403) or redirected_to_login, (path, status, body[:200])
    udb = sqlite_utils.Database(db)
    auth.add_user(udb, "reader", "a long viewer password 2", role="viewer")
    token = auth.create_token(udb, "reader", "test")
    udb.close()
    status, _, body = request(base, "GET", "/api/scores", {"Authorization": f"Bearer {token}"}, body=b"")
    assert status == 200, body[:300]
