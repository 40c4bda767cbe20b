"""HTML pages (server-rendered shells; their scripts draw every figure from the collector's API, ``/api``),
and log-in / log-out.

Log-in: the form carries a double-submit CSRF token (cookie and field compared in constant time); each
attempt passes the log-in throttle (:mod:`amgs.server.web.throttle`) before any password is hashed.
Cookies are ``HttpOnly`` and ``Secure`` whenever the request came over HTTPS (or ``[web] cookie_secure``).
"""

from __future__ import annotations

import hmac
import time
import urllib.parse
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from amgs.server.query.overview import synthetic_models

from .auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Principal,
    check_csrf,
    check_password,
    create_session,
    end_session,
    new_login_csrf,
)
from .context import TEMPLATES_DIR, page_viewer, web_config, who
from .throttle import CHECK_WAIT_S, retry_after

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
Viewer = Annotated[Principal | None, Depends(page_viewer)]


def _conn(request: Request):
    return request.app.state.db.local().conn


def _root(request: Request) -> str:
    return request.scope.get("root_path", "")


def _secure(request: Request) -> bool:
    """Cookies only over HTTPS: the collector's own TLS, or a TLS proxy on loopback (X-Forwarded-Proto)."""
    return web_config(request).cookie_secure or request.url.scheme == "https"


def _render(request: Request, viewer: Principal | None, name: str, page: str, **extra):
    conn = _conn(request)
    open_alerts = conn.execute("SELECT count(*) FROM alerts WHERE state = 'open'").fetchone()[0]
    return templates.TemplateResponse(
        request,
        name,
        {
            "title": web_config(request).title,
            "root": _root(request),
            "page": page,
            "user": viewer,
            "csrf": viewer.csrf if viewer else "",
            "open_alerts": open_alerts,
            "synthetic_models": synthetic_models(conn, time.time()),
            **extra,
        },
    )


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request, viewer: Viewer):
    return _render(request, viewer, "overview.html", "overview")


@router.get("/cages/{cage_id}", response_class=HTMLResponse)
def cage_page(request: Request, viewer: Viewer, cage_id: str):
    conn = _conn(request)
    known = conn.execute(
        "SELECT 1 FROM cages WHERE cage_id = ? UNION SELECT 1 FROM scores WHERE cage_id = ? LIMIT 1",
        [cage_id, cage_id],
    ).fetchone()
    if not known:
        raise HTTPException(404, f"no cage {cage_id!r}: it is not registered and has sent no scores")
    animals = conn.execute(
        "SELECT animal_id, group_id, strain, sex, housing FROM animals WHERE cage_id = ? ORDER BY animal_id",
        [cage_id],
    ).fetchall()
    return _render(
        request,
        viewer,
        "cage.html",
        "overview",
        cage_id=cage_id,
        animals=animals,
        recent_crops=web_config(request).recent_crops,
    )


@router.get("/groups", response_class=HTMLResponse)
def groups_page(request: Request, viewer: Viewer):
    return _render(request, viewer, "groups.html", "groups")


@router.get("/devices", response_class=HTMLResponse)
def devices_page(request: Request, viewer: Viewer):
    return _render(request, viewer, "devices.html", "devices")


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(request: Request, viewer: Viewer):
    return _render(request, viewer, "alerts.html", "alerts")


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def _login_page(request: Request, next: str, error: str = "", status_code: int = 200, headers=None):
    token = new_login_csrf()
    response = templates.TemplateResponse(
        request,
        "login.html",
        {
            "title": web_config(request).title,
            "root": _root(request),
            "page": "login",
            "user": who(request),
            "csrf": "",
            "open_alerts": 0,
            "login_csrf": token,
            "next": _safe_next(next),
            "error": error,
        },
        status_code=status_code,
        headers=headers,
    )
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request))
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/", error: str = ""):
    return _login_page(request, next, error[:200])


def _too_many(request: Request, next: str, seconds: float, why: str):
    wait = retry_after(seconds)
    return _login_page(
        request, next, f"{why}: try again in {wait} s.", status_code=429, headers={"Retry-After": str(wait)}
    )


@router.post("/login")
def login(
    request: Request,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    login_csrf: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=2000)] = "/",
):
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), login_csrf.encode()):
        raise HTTPException(403, "login form expired (CSRF check failed): reload the login page")
    throttle = request.app.state.login_throttle
    address = request.client.host if request.client else None
    wait = throttle.begin(username, address)
    if wait:
        return _too_many(request, next, wait, "Too many failed log-ins for this account or from this address")
    if not throttle.checks.acquire(timeout=CHECK_WAIT_S):
        throttle.busy()
        return _too_many(request, next, 2, "The collector is busy checking other log-ins")
    try:
        db = request.app.state.db.local()
        user = check_password(db, username, password)
    finally:
        throttle.checks.release()
    if user is None:
        throttle.failed(username, address)
        query = urllib.parse.urlencode({"next": _safe_next(next), "error": "wrong user name or password"})
        return RedirectResponse(f"{_root(request)}/login?{query}", status_code=303)
    throttle.succeeded(username, address)
    token, _ = create_session(db, user["username"], web_config(request).session_hours)
    response = RedirectResponse(_root(request) + _safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(web_config(request).session_hours * 3600),
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, csrf_token: Annotated[str, Form()] = ""):
    p = who(request)
    if p is not None:
        check_csrf(request, p, csrf_token)
        end_session(request.app.state.db.local(), request.cookies.get(SESSION_COOKIE, ""))
    response = RedirectResponse(_root(request) + "/", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
