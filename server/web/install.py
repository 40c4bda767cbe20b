"""Add the dashboard to the collector's app (``[web] enabled``): pages, log-in and log-out, ``/static``.

The pages are server-rendered shells; their scripts draw every figure from the collector's one API
(``/api``), under the same access policy (:mod:`amgs.server.http.access`).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from . import models_page, pages, rating
from .context import STATIC_DIR, LoginRequired


def install(app: FastAPI) -> None:
    app.include_router(pages.router)
    app.include_router(models_page.router)
    app.include_router(rating.router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    @app.exception_handler(LoginRequired)
    async def _to_login(request: Request, exc: LoginRequired) -> RedirectResponse:
        root = request.scope.get("root_path", "")
        return RedirectResponse(f"{root}/login?next={exc.next_url}", status_code=303)
