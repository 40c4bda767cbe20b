"""Log-in throttling: per account and per client address, a clear 429 with Retry-After, answered before
any password hashing (so parallel guessers cannot load the collector host), and no stranger can keep the
real user out for longer than a short window."""

from __future__ import annotations

import re
import threading

import pytest

from amgs.server.http.app import create_app
from amgs.server.storage.db import open_database
from amgs.server.web import auth
from amgs.server.web.throttle import ACCOUNT, ADDRESS, LoginThrottle
from tests.test_web_auth import server_config
from tests.web_helpers import Served, http


@pytest.fixture
def site(tmp_path):
    """A served collector whose throttle runs on a clock the test moves (``app.state.test_clock``)."""
    config = server_config(tmp_path)  # engine-neutral: tests/test_pg_web.py runs these on PostgreSQL too
    db = open_database(config)
    app = create_app(config, db)
    clock = [1000.0]
    app.state.login_throttle = LoginThrottle(clock=lambda: clock[0])
    app.state.test_clock = clock
    served = Served(app)
    auth.add_user(db.local(), "vet", "correct horse battery", role="staff")
    yield served.base, app
    served.stop()


def attempt(base: str, user: str, password: str, address: str):
    """One log-in through the form, as a browser at ``address`` (X-Forwarded-For from a loopback proxy)."""
    _, headers, page = http("GET", f"{base}/login", headers={"X-Forwarded-For": address})
    token = re.search(r'name="login_csrf" value="([^"]+)"', page).group(1)
    return http(
        "POST",
        f"{base}/login",
        form={"username": user, "password": password, "login_csrf": token, "next": "/"},
        headers={"Cookie": headers["Set-Cookie"].split(";")[0], "X-Forwarded-For": address},
    )


def metric(base: str, name: str) -> float:
    _, _, text = http("GET", f"{base}/metrics")
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_wrong_passwords_are_throttled_with_a_clear_429(site):
    base, app = site
    for _ in range(ACCOUNT.free):
        status, headers, _ = attempt(base, "vet", "wrong password", "10.0.0.1")
        assert status == 303 and "error=" in headers["Location"]
    status, headers, page = attempt(base, "vet", "wrong password", "10.0.0.1")
    assert status == 429
    wait = int(headers["Retry-After"])
    assert 1 <= wait <= ACCOUNT.max_delay_s
    assert "Too many failed log-ins" in page and f"{wait} s" in page
    # the right password does not get past the throttle either (no guess is ever checked while throttled)
    assert attempt(base, "vet", "correct horse battery", "10.0.0.1")[0] == 429
    # the account is throttled from everywhere; other accounts from another address are not
    assert attempt(base, "vet", "correct horse battery", "10.0.0.2")[0] == 429
    assert attempt(base, "nobody", "x" * 10, "10.0.0.2")[0] == 303
    app.state.test_clock[0] += wait
    status, headers, _ = attempt(base, "vet", "correct horse battery", "10.0.0.2")
    assert status == 303 and headers["Location"] == "/" and auth.SESSION_COOKIE in headers["Set-Cookie"]


def test_throttled_attempts_cost_no_password_hashing(site):
    base, _ = site
    for _ in range(ACCOUNT.free):
        attempt(base, "vet", "wrong password", "10.0.0.3")
    checked = metric(base, 'amgs_login_attempts_total{outcome="wrong"}')
    for _ in range(20):
        assert attempt(base, "vet", "wrong password", "10.0.0.3")[0] == 429
    assert metric(base, 'amgs_login_attempts_total{outcome="wrong"}') == checked  # no Argon2 ran
    assert metric(base, 'amgs_login_attempts_total{outcome="throttled"}') >= 20


def test_parallel_guessers_get_no_more_tries_than_the_allowance(site):
    base, _ = site
    statuses: list[int] = []

    def guess(i: int) -> None:
        statuses.append(attempt(base, "vet", f"guess {i}", "10.0.0.4")[0])

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses.count(303) <= ACCOUNT.free and statuses.count(429) >= 16 - ACCOUNT.free
    assert metric(base, 'amgs_login_attempts_total{outcome="wrong"}') <= ACCOUNT.free


def test_a_stranger_cannot_keep_the_real_user_out():
    now = [1000.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    # a distributed guesser: one failure from each of 2,000 addresses, as fast as allowed
    worst = 0.0
    for i in range(2000):
        wait = throttle.begin("vet", f"10.1.{i // 250}.{i % 250}")
        if wait:
            worst = max(worst, wait)
            now[0] += wait
            assert throttle.begin("vet", f"10.1.{i // 250}.{i % 250}") == 0
        throttle.failed("vet", f"10.1.{i // 250}.{i % 250}")
    assert worst <= ACCOUNT.max_delay_s
    # the real user, from their own address, waits at most the account's short window, then gets in
    wait = throttle.begin("vet", "10.9.9.9")
    assert wait <= ACCOUNT.max_delay_s
    now[0] += wait
    assert throttle.begin("vet", "10.9.9.9") == 0
    throttle.succeeded("vet", "10.9.9.9")
    assert throttle.begin("vet", "10.9.9.9") == 0
    # one address guessing many accounts is slowed down far more than any one account
    for k in range(200):
        wait = throttle.begin(f"user{k}", "10.6.6.6")
        if wait:
            now[0] += wait
            throttle.begin(f"user{k}", "10.6.6.6")
        throttle.failed(f"user{k}", "10.6.6.6")
    assert throttle.begin("someone", "10.6.6.6") > ACCOUNT.max_delay_s
    assert throttle.begin("someone", "10.6.6.6") <= ADDRESS.max_delay_s
    # after a quiet spell everything is forgotten
    now[0] += ADDRESS.forget_after_s + 1
    assert throttle.begin("someone", "10.6.6.6") == 0


def test_ipv6_addresses_count_per_64_prefix_and_memory_stays_bounded():
    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0], max_entries=500)
    for i in range(ADDRESS.free):
        throttle.begin(f"u{i}", f"2001:db8:1:2::{i:x}")
        throttle.failed(f"u{i}", f"2001:db8:1:2::{i:x}")
    assert throttle.begin("other", "2001:db8:1:2:ffff::1") > 0  # same /64
    assert throttle.begin("other", "2001:db8:1:3::1") == 0
    for i in range(5000):
        throttle.begin(f"x{i}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
        throttle.failed(f"x{i}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}")
        now[0] += 0.01
    assert len(throttle) <= 2 * 500
