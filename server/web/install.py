"""Hook the dashboard into the collector's FastAPI app: ``install(app, config, db, engine)``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlite_utils
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from ..alerts.engine import AlertEngine, wall_clock
from ..storage.db import require_schema
from . import api, models_page, pages
from .config import WebConfig
from .context import STATIC_DIR, LoginRequired, WebContext, api_actor, api_viewer


def install(
    app: FastAPI,
    config,
    db: Callable[[], sqlite_utils.Database],
    engine: AlertEngine,
    clock: Callable[[], datetime] = wall_clock,
) -> WebContext:
    """Add the pages, the ``/api/web`` endpoints and ``/static``; put the collector's API behind the same
    access rules (viewing open or login-only by config; changes need a staff login or token + CSRF)."""
    web: WebConfig = getattr(config, "web", None) or WebConfig()
    require_schema(db(), "the dashboard")  # its accounts and the alerts live in migrated tables
    ctx = WebContext(config=config, web=web, db=db, engine=engine, clock=clock)
    app.state.amgs_web = ctx
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(models_page.router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    from amgs.server.http import access

    app.dependency_overrides[access.require_viewer] = api_viewer
    app.dependency_overrides[access.require_editor] = api_actor

    @app.exception_handler(LoginRequired)
    async def _to_login(request: Request, exc: LoginRequired) -> RedirectResponse:
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}/login?next={exc.next_url}", status_code=303)

    return ctx


def install_app(app: FastAPI) -> WebContext:
    """Called from the collector's ``create_app``: one alert engine per app, shared with the alert jobs
    (``app.state.alert_engine``). ``app.state.clock`` may replace the wall clock (the demo's accelerated time)."""
    config, db = app.state.config, app.state.db
    clock = getattr(app.state, "clock", None) or wall_clock
    engine = AlertEngine(db.local, config.alerts, config.notify, clock)
    app.state.alert_engine = engine
    return install(app, config, db.local, engine, clock)
