"""HTML pages (server-rendered shells; the charts fetch their data from ``/api/web``) and login/logout."""

from __future__ import annotations

import urllib.parse
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from .auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Principal,
    check_password,
    create_session,
    end_session,
    new_login_csrf,
)
from .context import TEMPLATES_DIR, WebContext, context, page_viewer, who

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
Ctx = Annotated[WebContext, Depends(context)]
Viewer = Annotated[Principal | None, Depends(page_viewer)]


def _render(request: Request, ctx: WebContext, viewer: Principal | None, name: str, page: str, **extra):
    open_alerts = ctx.conn.execute("SELECT count(*) FROM alerts WHERE state = 'open'").fetchone()[0]
    return templates.TemplateResponse(
        request,
        name,
        {
            "title": ctx.web.title,
            "root": request.scope.get("root_path", ""),
            "page": page,
            "user": viewer,
            "csrf": viewer.csrf if viewer else "",
            "open_alerts": open_alerts,
            **extra,
        },
    )


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request, ctx: Ctx, viewer: Viewer):
    return _render(request, ctx, viewer, "overview.html", "overview")


@router.get("/cages/{cage_id}", response_class=HTMLResponse)
def cage_page(request: Request, ctx: Ctx, viewer: Viewer, cage_id: str):
    known = ctx.conn.execute(
        "SELECT 1 FROM cages WHERE cage_id = ? UNION SELECT 1 FROM scores WHERE cage_id = ? LIMIT 1",
        [cage_id, cage_id],
    ).fetchone()
    if not known:
        raise HTTPException(404, f"no cage {cage_id!r}: it is not registered and has sent no scores")
    animals = ctx.conn.execute(
        "SELECT animal_id, group_id, strain, sex, housing FROM animals WHERE cage_id = ? ORDER BY animal_id",
        [cage_id],
    ).fetchall()
    return _render(request, ctx, viewer, "cage.html", "overview", cage_id=cage_id, animals=animals)


@router.get("/groups", response_class=HTMLResponse)
def groups_page(request: Request, ctx: Ctx, viewer: Viewer):
    return _render(request, ctx, viewer, "groups.html", "groups")


@router.get("/devices", response_class=HTMLResponse)
def devices_page(request: Request, ctx: Ctx, viewer: Viewer):
    return _render(request, ctx, viewer, "devices.html", "devices")


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, ctx: Ctx, viewer: Viewer):
    return _render(request, ctx, viewer, "alerts.html", "alerts")


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, ctx: Ctx, next: str = "/", error: str = ""):
    token = new_login_csrf()
    response = templates.TemplateResponse(
        request,
        "login.html",
        {
            "title": ctx.web.title,
            "root": request.scope.get("root_path", ""),
            "page": "login",
            "user": who(request),
            "csrf": "",
            "open_alerts": 0,
            "login_csrf": token,
            "next": _safe_next(next),
            "error": error,
        },
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=ctx.web.cookie_secure
    )
    return response


@router.post("/login")
def login(
    request: Request,
    ctx: Ctx,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    login_csrf: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
):
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or cookie != login_csrf:
        raise HTTPException(403, "login form expired (CSRF check failed): reload the login page")
    db = ctx.db()
    user = check_password(db, username, password)
    if user is None:
        query = urllib.parse.urlencode({"next": _safe_next(next), "error": "wrong user name or password"})
        return RedirectResponse(f"{request.scope.get('root_path', '')}/login?{query}", status_code=303)
    token, _ = create_session(db, user["username"], ctx.web.session_hours)
    response = RedirectResponse(request.scope.get("root_path", "") + _safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(ctx.web.session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=ctx.web.cookie_secure,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, ctx: Ctx, csrf_token: Annotated[str, Form()] = ""):
    from .auth import check_csrf

    p = who(request)
    if p is not None:
        check_csrf(request, p, csrf_token)
        end_session(ctx.db(), request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse(request.scope.get("root_path", "") + "/", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
