"""The collector's HTTP application: the JSON API (``/api``, OpenAPI at ``/openapi.json``), ``/healthz``,
``/metrics`` (Prometheus text format), and the dashboard's pages when ``[web] enabled``.

``create_app(config, db, runtime=None)``: ``runtime`` is the running :class:`~amgs.server.service.Collector`
(ingest statistics, MQTT state, ``publish``) or ``None`` when the API serves a database without ingest.
``app.state`` holds ``config``, ``db`` (a :class:`~amgs.server.storage.db.CollectorDB`), ``runtime``,
``clock`` (now, as an aware datetime: the wall clock unless the demo sets its own), ``alert_engine`` (one
per app, shared with the alert jobs) and ``login_throttle``. Access control is installed here, once, for
every route (:mod:`amgs.server.http.access`).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse

from amgs import __version__
from amgs.server.storage.db import SCHEMA_VERSION, CollectorDB, require_schema

from ..alerts.engine import AlertEngine, wall_clock
from ..web.throttle import LoginThrottle
from . import access
from .api import router as api_router
from .models_api import device_router as models_device_router
from .models_api import router as models_router
from .rating import router as rating_router


def create_app(config, db: CollectorDB, runtime=None) -> FastAPI:
    app = FastAPI(
        title="aMGS collector",
        version=__version__,
        description="Automated Mouse Grimace Scale collector: time courses, devices, study metadata, alerts, "
        "exports. A parameter that cannot be used is answered with 400 and a detail naming it.",
        root_path=config.http.root_path,
        docs_url=None,  # Swagger UI and ReDoc pages load their scripts from a CDN: nothing here may
        redoc_url=None,  # need the internet. The OpenAPI document itself is served at /openapi.json.
    )
    app.state.config = config
    app.state.db = db
    app.state.runtime = runtime
    app.state.clock = wall_clock
    # the engine asks app.state.clock each time, so a clock set after create_app (the demo's) applies to both
    app.state.alert_engine = AlertEngine(db.local, config.alerts, config.notify, lambda: app.state.clock())
    app.state.login_throttle = LoginThrottle()
    require_schema(db.local(), "the collector's API")  # accounts, tokens and alerts live in migrated tables
    access.install(app)
    app.include_router(api_router)
    app.include_router(models_router)
    app.include_router(models_device_router)
    app.include_router(rating_router)
    app.add_exception_handler(RequestValidationError, _bad_parameter)
    app.add_middleware(SecurityHeaders)

    @app.get("/healthz", summary="Liveness and readiness: database, writer, MQTT")
    def healthz() -> JSONResponse:
        body = health(db, runtime)
        return JSONResponse(body, status_code=200 if body["status"] != "failing" else 503)

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus text format")
    def metrics() -> PlainTextResponse:
        text = prometheus_text(db, runtime) + app.state.login_throttle.prometheus_text()
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    if config.web.enabled:
        from amgs.server.web.install import install

        install(app)
    return app


SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),  # nobody frames the acknowledge button (clickjacking)
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"frame-ancestors 'none'; object-src 'none'; base-uri 'none'; form-action 'self'",
    ),
]
"""On every response: never framed, no plug-ins, no <base> or form posts elsewhere, no MIME sniffing, no
referrer leaving the site. (A ``script-src 'self'`` policy would also suit the pages, which load only
their own vendored scripts, but it blocks the string evaluation the Playwright browser tests use.)"""


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` (pure ASGI: streamed CSV responses stay streamed)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


async def _bad_parameter(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's own checks (types, ranges) answer like the API's: 400, a detail naming the parameter."""
    parts = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ())]
        name = ".".join(loc[1:]) or ".".join(loc) or "request"
        got = e.get("input")
        shown = f" (got {str(got)[:40]!r})" if isinstance(got, str | int | float) else ""
        parts.append(f"{name}: {e.get('msg', 'invalid')}{shown}")
    return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=400)


def health(db: CollectorDB, runtime) -> dict[str, Any]:
    problems, status = [], "ok"
    try:
        db.local().execute("SELECT 1").fetchone()
    except Exception as e:  # any database failure makes the collector useless
        problems.append(f"database: {e}")
        status = "failing"
    body: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "db": str(db.path)}
    if runtime is not None:
        stats = runtime.stats
        body["mqtt"] = runtime.mqtt.describe()
        body["queue"] = runtime.inbox.qsize()
        body["writer_alive"] = runtime.writer.is_alive()
        body["last_commit_at"] = stats.last_commit_at
        if not runtime.writer.is_alive():
            problems.append("writer thread stopped")
            status = "failing"
        if stats.last_error:
            problems.append(stats.last_error)
            status = "failing" if "commit" in stats.last_error else status
        if not body["mqtt"]["connected"]:
            problems.append(
                f"not connected to the MQTT broker ({body['mqtt']['last_error'] or 'connecting'})"
            )
            status = "degraded" if status == "ok" else status
    body["status"] = status
    body["problems"] = problems
    return body


def _metric(lines: list[str], name: str, kind: str, help_text: str, samples) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        label = "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}" if labels else ""
        lines.append(f"{name}{label} {value}")


def _escape(v: Any) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(db: CollectorDB, runtime) -> str:
    conn = db.local()
    lines: list[str] = []
    now = time.time()
    q = lambda sql: conn.execute(sql).fetchone()[0] or 0  # noqa: E731
    _metric(
        lines,
        "amgs_scores_total",
        "gauge",
        "Score records stored (all time)",
        [({}, q("SELECT sum(scores_total) FROM devices"))],
    )
    _metric(
        lines,
        "amgs_quarantine_messages_total",
        "gauge",
        "Messages quarantined (including repeats)",
        [({}, q("SELECT sum(count) FROM quarantine"))],
    )
    states = conn.execute("SELECT coalesce(state, 'unknown'), count(*) FROM devices GROUP BY 1").fetchall()
    _metric(
        lines, "amgs_devices", "gauge", "Devices by reported state", [({"state": s}, n) for s, n in states]
    )
    gaps = conn.execute(
        "SELECT device_id, missing_open, lost_total, gaps_total, committed_seq, coalesce(queue_depth, 0) FROM devices"
    ).fetchall()
    _metric(
        lines,
        "amgs_seq_missing",
        "gauge",
        "Sequence numbers missing now",
        [({"device": g[0]}, g[1]) for g in gaps],
    )
    _metric(
        lines,
        "amgs_seq_lost_total",
        "counter",
        "Sequence numbers given up on",
        [({"device": g[0]}, g[2]) for g in gaps],
    )
    _metric(
        lines,
        "amgs_seq_gaps_total",
        "counter",
        "Sequence gaps detected",
        [({"device": g[0]}, g[3]) for g in gaps],
    )
    _metric(
        lines, "amgs_committed_seq", "gauge", "Committed watermark", [({"device": g[0]}, g[4]) for g in gaps]
    )
    _metric(
        lines,
        "amgs_device_queue_depth",
        "gauge",
        "Device outbox depth",
        [({"device": g[0]}, g[5]) for g in gaps],
    )
    if runtime is not None:
        s = runtime.stats
        counters = [
            ("amgs_ingest_received_total", "Messages received from the broker", s.received),
            ("amgs_ingest_stored_total", "Scores stored by this process", s.stored),
            ("amgs_ingest_duplicates_total", "Redelivered scores ignored", s.duplicates),
            (
                "amgs_ingest_duplicates_conflicting_total",
                "Same msg_id, different content: quarantined",
                s.conflicting,
            ),
            ("amgs_ingest_quarantined_total", "Messages quarantined by this process", s.quarantined),
            ("amgs_ingest_commits_total", "Write transactions committed", s.batches),
            ("amgs_ingest_commit_errors_total", "Write transactions that failed", s.commit_errors),
            (
                "amgs_ingest_unsynced_clock_total",
                "Scores whose device clock was not synchronized",
                s.unsynced,
            ),
        ]
        for name, text, value in counters:
            _metric(lines, name, "counter", text, [({}, value)])
        _metric(
            lines,
            "amgs_ingest_rate",
            "gauge",
            "Scores stored per second over the last minute",
            [({}, round(s.rate(60, now), 3))],
        )
        _metric(
            lines,
            "amgs_ingest_quarantined_by_field_total",
            "counter",
            "Messages quarantined by this process, by the field the reason names (or payload/topic/internal)",
            [({"field": k}, v) for k, v in sorted(s.quarantine_reasons.items())],
        )
        _metric(
            lines,
            "amgs_ingest_queue",
            "gauge",
            "Messages waiting for the writer",
            [({}, runtime.inbox.qsize())],
        )
        _metric(
            lines,
            "amgs_mqtt_connected",
            "gauge",
            "1 when connected to the broker",
            [({}, int(runtime.mqtt.connected.is_set()))],
        )
        _metric(
            lines,
            "amgs_mqtt_receiver_restarts_total",
            "counter",
            "Times the MQTT receiver process died and was started again",
            [({}, runtime.mqtt.restarts)],
        )
        _metric(
            lines,
            "amgs_uptime_seconds",
            "gauge",
            "Seconds since the collector started",
            [({}, round(now - s.started_at, 1))],
        )
    return "\n".join(lines) + "\n"
