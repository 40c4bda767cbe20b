"""The dashboard's Models page: registered models with their figures, what each device runs, and the
active-vs-candidate agreement per cage from shadow scores (server-rendered from the registry)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from amgs.server.models import registry

from .pages import Viewer, _conn, _render

router = APIRouter(include_in_schema=False)


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if t else ""


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, viewer: Viewer):
    conn = _conn(request)
    models = registry.list_models(conn)
    names = {m["sha256"]: f"{m['name']} {m['version']}" for m in models}
    return _render(
        request,
        viewer,
        "models.html",
        "models",
        models=models,
        headline=registry.HEADLINE,
        assignments=registry.assignments(conn),
        agreement=registry.agreement(conn),
        names=names,
        when=_when,
    )
