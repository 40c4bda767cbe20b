"""What every dashboard handler needs (config, database, alert engine, clock) and who is asking."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlite_utils
from fastapi import HTTPException, Request

from ..alerts.engine import AlertEngine
from .auth import Principal, check_csrf, principal
from .config import WebConfig

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass
class WebContext:
    config: Any  # ServerConfig
    web: WebConfig
    db: Callable[[], sqlite_utils.Database]  # this thread's connection
    engine: AlertEngine
    clock: Callable[[], datetime]

    @property
    def conn(self):
        return self.db().conn

    def now(self) -> float:
        return self.clock().timestamp()


class LoginRequired(Exception):
    """Raised by page dependencies; the app turns it into a redirect to /login."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def context(request: Request) -> WebContext:
    return request.app.state.amgs_web


def who(request: Request) -> Principal | None:
    return principal(context(request).db(), request)


def api_viewer(request: Request) -> Principal | None:
    """JSON endpoints: anonymous viewing unless the config requires a login."""
    p = who(request)
    if p is None and context(request).web.view_requires_login:
        raise HTTPException(401, "log in (or send an API token) to view this collector")
    return p


def page_viewer(request: Request) -> Principal | None:
    p = who(request)
    if p is None and context(request).web.view_requires_login:
        raise LoginRequired(str(request.url.path))
    return p


def api_actor(request: Request) -> Principal:
    """State-changing endpoints: staff login or API token, and the CSRF token for cookie sessions."""
    p = who(request)
    if p is None:
        raise HTTPException(401, "log in (or send an API token) to do this")
    if not p.can_act:
        raise HTTPException(403, f"user {p.username!r} has role {p.role!r}: staff or admin needed")
    check_csrf(request, p)
    return p
