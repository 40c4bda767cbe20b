"""HTTPS for the collector's dashboard and API: the ``[http]`` certificate checked before anything starts,
and the uvicorn settings every HTTP server of the collector uses (``amgs server run`` and ``serve-api``).

TLS 1.2 or newer (Python's default for a server context), forward-secret AEAD ciphers only (Python's
own default list; uvicorn would otherwise allow every TLS 1.0 cipher). ``install-collector.sh`` points
``http.tls_cert_file``/``tls_key_file`` at a copy of the site's broker certificate (same host, same names,
signed by the site CA that devices already trust).
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
import stat
from pathlib import Path

import uvicorn

from ..config import ConfigError, HttpConfig

log = logging.getLogger(__name__)

CIPHERS = "@SECLEVEL=2:ECDH+AESGCM:ECDH+CHACHA20:ECDH+AES:DHE+AES:!aNULL:!eNULL:!aDSS:!SHA1:!AESCCM"
"""Python's default for its own contexts (TLS 1.3 suites are not affected by this list)."""


def _read(name: str, path: Path, marker: bytes, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"http.{name} {str(path)!r} cannot be read: {e.strerror or e}") from None
    if marker not in data:
        raise ConfigError(f"http.{name} {str(path)!r} holds no PEM {what}")
    return data


def check_https(http: HttpConfig) -> bool:
    """True when the collector serves HTTPS. Loads the certificate and key once, so every problem is a
    :class:`ConfigError` naming the setting and the file, at start and in ``amgs server check-config``."""
    if http.tls_cert_file is None or http.tls_key_file is None:
        return False
    cert, key = Path(http.tls_cert_file), Path(http.tls_key_file)
    _read("tls_cert_file", cert, b"-----BEGIN CERTIFICATE-----", "certificate")
    key_text = _read("tls_key_file", key, b"PRIVATE KEY-----", "private key")
    if b"ENCRYPTED" in key_text:
        raise ConfigError(
            f"http.tls_key_file {str(key)!r} is encrypted: the collector starts unattended and needs the key "
            "unencrypted, readable only by root and the collector's group (mode 0640)"
        )
    if key.stat().st_mode & stat.S_IROTH:
        raise ConfigError(
            f"http.tls_key_file {str(key)!r} is readable by every user: chmod 0640 it (group: the collector's)"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key), password=lambda: b"")
    except ssl.SSLError as e:
        if "KEY_VALUES_MISMATCH" in str(e):
            raise ConfigError(
                f"http.tls_key_file {str(key)!r} does not belong to the certificate in http.tls_cert_file "
                f"{str(cert)!r}"
            ) from None
        raise ConfigError(
            f"http.tls_cert_file {str(cert)!r} with http.tls_key_file {str(key)!r} cannot be loaded: {e}"
        ) from None
    _warn_if_expiring(cert)
    return True


def _warn_if_expiring(cert: Path) -> None:
    try:  # the ssl module's own decoder (no extra dependency); a log line only, so any failure is skipped
        not_after = ssl._ssl._test_decode_cert(str(cert))["notAfter"]  # noqa: SLF001
        expires = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), dt.UTC)
    except Exception:
        return
    left = expires - dt.datetime.now(dt.UTC)
    if left < dt.timedelta(days=30):
        log.warning(
            "the HTTPS certificate %s %s on %s: renew it (docs/deployment.md, Operations)",
            cert,
            "expired" if left.total_seconds() < 0 else "expires",
            expires.date(),
        )


def scheme(http: HttpConfig) -> str:
    return "https" if http.tls_cert_file is not None else "http"


def uvicorn_config(app, http: HttpConfig, **options) -> uvicorn.Config:
    """The collector's uvicorn settings for ``app`` on ``[http]`` (TLS when configured)."""
    tls = {}
    if check_https(http):
        tls = dict(
            ssl_certfile=str(http.tls_cert_file), ssl_keyfile=str(http.tls_key_file), ssl_ciphers=CIPHERS
        )
    return uvicorn.Config(app, host=http.bind, port=http.port, **tls, **options)
