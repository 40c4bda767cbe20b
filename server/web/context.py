"""What the dashboard's pages need: who is asking (the API's own access check), templates and static files."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request

from amgs.server.http.access import current

from .auth import Principal
from .config import WebConfig

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"


class LoginRequired(Exception):
    """Raised by page dependencies; the app turns it into a redirect to /login."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def web_config(request: Request) -> WebConfig:
    return request.app.state.config.web


def who(request: Request) -> Principal | None:
    return current(request)


def page_viewer(request: Request) -> Principal | None:
    p = who(request)
    if p is None and web_config(request).view_requires_login:
        raise LoginRequired(str(request.url.path))
    return p
