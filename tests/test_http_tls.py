"""HTTPS by default: the collector serves its dashboard and API over TLS with the site certificate
(scripts/make-ca.sh, as install-collector.sh makes it); plain HTTP only on loopback or by explicit opt-in;
certificate problems are found before anything starts, naming the file; cookies are Secure over HTTPS."""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import pytest

from amgs.broker import free_port
from amgs.server.config import ConfigError, parse_config

REPO = Path(__file__).resolve().parents[1]
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(
        ["bash", str(REPO / "scripts" / "make-ca.sh"), "--dir", str(d), "localhost", "127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return d


def config_with(tmp_path: Path, **http) -> object:
    return parse_config(
        {
            "storage": {"state_dir": str(tmp_path / "state")},
            "mqtt": {"port": free_port()},  # no broker: HTTP must work without one
            "http": {"port": 0, **http},
            "notify": {"mqtt": {"enabled": False}},
        }
    )


# ------------------------------------------------------------------ config rules


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "10.1.2.3", "collector.example"])
def test_plain_http_on_the_network_is_refused_unless_asked_for(tmp_path, bind):
    with pytest.raises(ConfigError) as e:
        config_with(tmp_path, bind=bind)
    text = str(e.value)
    assert "http.bind" in text and "tls_cert_file" in text and "allow_plain_http" in text
    assert config_with(tmp_path, bind=bind, allow_plain_http=True).http.bind == bind


@pytest.mark.parametrize("bind", ["127.0.0.1", "127.0.0.53", "::1", "localhost"])
def test_plain_http_on_loopback_is_fine(tmp_path, bind):
    assert config_with(tmp_path, bind=bind).http.tls_cert_file is None


def test_certificate_and_key_come_together(tmp_path, certs):
    with pytest.raises(ConfigError, match="tls_key_file"):
        config_with(tmp_path, tls_cert_file=str(certs / "server.crt"))
    with pytest.raises(ConfigError, match="tls_cert_file"):
        config_with(tmp_path, tls_key_file=str(certs / "server.key"))


@needs_openssl
def test_certificate_problems_are_found_up_front_naming_the_file(tmp_path, certs):
    from amgs.server.http.tls import check_https

    good = {"tls_cert_file": str(certs / "server.crt"), "tls_key_file": str(certs / "server.key")}
    check_https(config_with(tmp_path, bind="0.0.0.0", **good).http)  # no error
    missing = tmp_path / "nope.crt"
    with pytest.raises(ConfigError, match=re.escape(f"http.tls_cert_file {str(missing)!r}")):
        check_https(config_with(tmp_path, **{**good, "tls_cert_file": str(missing)}).http)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key\n")
    with pytest.raises(ConfigError, match=re.escape(f"http.tls_key_file {str(garbage)!r}")):
        check_https(config_with(tmp_path, **{**good, "tls_key_file": str(garbage)}).http)
    other = tmp_path / "other"
    subprocess.run(
        ["bash", str(REPO / "scripts" / "make-ca.sh"), "--dir", str(other), "localhost"],
        check=True,
        capture_output=True,
    )
    with pytest.raises(ConfigError, match="does not belong to"):
        check_https(config_with(tmp_path, **{**good, "tls_key_file": str(other / "server.key")}).http)
    # the collector itself refuses to start on them, before it opens its database
    from amgs.server.service import Collector

    with pytest.raises(ConfigError, match="tls_key_file"):
        Collector(config_with(tmp_path, **{**good, "tls_key_file": str(garbage)}))
    assert not (tmp_path / "state" / "collector.db").exists()


def test_check_config_reports_the_certificate(tmp_path, certs):
    from click.testing import CliRunner

    from amgs.cli import main

    toml = tmp_path / "server.toml"
    toml.write_text(
        f'[storage]\nstate_dir = "{tmp_path / "state"}"\n[http]\nbind = "0.0.0.0"\n'
        f'tls_cert_file = "{certs / "server.crt"}"\ntls_key_file = "{tmp_path / "missing.key"}"\n'
    )
    result = CliRunner().invoke(main, ["server", "check-config", str(toml)])
    assert result.exit_code != 0 and "http.tls_key_file" in result.output and "missing.key" in result.output


# ------------------------------------------------------------------ a real TLS request


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def test_collector_serves_https_with_the_site_ca_and_secure_cookies(tmp_path, certs):
    from amgs.server.service import Collector
    from amgs.server.web import auth

    config = config_with(
        tmp_path,
        bind="127.0.0.1",
        tls_cert_file=str(certs / "server.crt"),
        tls_key_file=str(certs / "server.key"),
    )
    collector = Collector(config).start()
    try:
        auth.add_user(collector.db.local(), "vet", "correct horse battery", role="staff")
        port = collector.http_port
        site_ca = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=site_ca), _NoRedirect)
        with opener.open(f"https://localhost:{port}/healthz", timeout=10) as r:
            assert r.status == 200 and json.load(r)["status"] in ("ok", "degraded")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # the TLS version it speaks
            with site_ca.wrap_socket(s, server_hostname="localhost") as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
        # without the site CA the certificate is not trusted; plain HTTP gets no answer
        with pytest.raises(urllib.error.URLError) as e:
            urllib.request.urlopen(
                f"https://localhost:{port}/healthz", timeout=10, context=ssl.create_default_context()
            )
        assert isinstance(e.value.reason, ssl.SSLCertVerificationError)
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read()
        # TLS 1.1 and older are refused
        old = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                old.minimum_version = ssl.TLSVersion.TLSv1
                old.maximum_version = ssl.TLSVersion.TLSv1_1
        except (ValueError, ssl.SSLError):
            old = None
        if old is not None:
            with pytest.raises((ssl.SSLError, OSError)):
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    old.wrap_socket(s, server_hostname="localhost").close()
        # log in over HTTPS: both cookies are Secure (and HttpOnly)
        with opener.open(f"https://localhost:{port}/login", timeout=10) as r:
            page = r.read().decode()
            form_cookie = r.headers["Set-Cookie"]
        assert "Secure" in form_cookie and "HttpOnly" in form_cookie
        token = re.search(r'name="login_csrf" value="([^"]+)"', page).group(1)
        data = urllib.parse.urlencode(
            {"username": "vet", "password": "correct horse battery", "login_csrf": token, "next": "/"}
        ).encode()
        req = urllib.request.Request(
            f"https://localhost:{port}/login", data=data, headers={"Cookie": form_cookie.split(";")[0]}
        )
        try:
            opener.open(req, timeout=10)
            raise AssertionError("expected a redirect after logging in")
        except urllib.error.HTTPError as e:
            assert e.code == 303
            session = [c for c in e.headers.get_all("Set-Cookie") if c.startswith(auth.SESSION_COOKIE + "=")]
        assert session and "Secure" in session[0] and "HttpOnly" in session[0]
    finally:
        collector.stop()


def test_installer_serves_https_with_the_site_certificate(tmp_path):
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "install-collector.sh"), "--dry-run", "--site", "vivarium-a",
         "--host", "collector.example", "--state-dir", str(tmp_path / "state"), "--prefix", str(tmp_path / "opt")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    cmds = [line[2:] for line in out.splitlines() if line.startswith("+ ")]
    copy = [c for c in cmds if "/etc/amgs/tls" in c and "server.key" in c and c.startswith("install ")]
    assert copy and "-m 0640" in copy[0] and "-g amgs" in copy[0], cmds
    make_ca = next(i for i, c in enumerate(cmds) if "make-ca.sh" in c)
    assert cmds.index(copy[0]) > make_ca
    if not Path("/etc/amgs/server.toml").exists():  # a fresh install writes the HTTPS settings
        assert 'tls_cert_file = "/etc/amgs/tls/server.crt"' in out
        assert 'tls_key_file = "/etc/amgs/tls/server.key"' in out
        assert "allow_plain_http" not in out.split("[http]")[1].split("[web]")[0]


def test_cookies_are_secure_behind_a_tls_proxy_on_loopback(tmp_path):
    """Plain HTTP on loopback behind a TLS reverse proxy: X-Forwarded-Proto from 127.0.0.1 marks cookies Secure."""
    from amgs.server.http.app import create_app
    from amgs.server.storage.db import open_database
    from tests.web_helpers import Served, http

    config = config_with(tmp_path)
    served = Served(create_app(config, open_database(config)))
    try:
        _, headers, _ = http("GET", f"{served.base}/login", headers={"X-Forwarded-Proto": "https"})
        assert "Secure" in headers["Set-Cookie"]
        _, headers, _ = http("GET", f"{served.base}/login")
        assert "Secure" not in headers["Set-Cookie"]  # plain HTTP on loopback (the demo): no Secure flag
    finally:
        served.stop()
