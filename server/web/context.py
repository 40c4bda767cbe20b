"""Who is asking (worked out once per request, for the pages and for the API's access policy in
``amgs.server.http.access``), and where the templates and static files are."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request

from .auth import Principal, principal
from .config import WebConfig

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"


class LoginRequired(Exception):
    """Raised by page dependencies; the app turns it into a redirect to /login."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def web_config(request: Request) -> WebConfig:
    return request.app.state.config.web


_UNSET = object()


def who(request: Request) -> Principal | None:
    """Who is making this request (None = anonymous); a bad API token is refused here with 401."""
    cached = getattr(request.state, "amgs_principal", _UNSET)
    if cached is _UNSET:
        cached = principal(request.app.state.db.local(), request)
        request.state.amgs_principal = cached
    return cached


def require(request: Request, can: str, to: str, roles: str) -> Principal:
    """Who is asking, if their role has ``can`` (a :class:`Principal` property such as ``can_act``): 401 when
    nobody is logged in, 403 naming the role otherwise. ``to``: what they tried; ``roles``: who may."""
    from fastapi import HTTPException

    p = who(request)
    if p is None:
        raise HTTPException(401, f"log in (or send an API token) to {to}")
    if not getattr(p, can):
        raise HTTPException(403, f"user {p.username!r} has role {p.role!r}: {roles} needed")
    return p


def page_viewer(request: Request) -> Principal | None:
    p = who(request)
    if p is None and web_config(request).view_requires_login:
        raise LoginRequired(str(request.url.path))
    return p
