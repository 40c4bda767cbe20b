"""Who may read and who may change: one policy, applied to every route of the collector's app.

Every read endpoint depends on :func:`require_viewer` and every state-changing one on
:func:`require_editor`. The two functions are the seam (open on their own, so a router can be tested
bare); :func:`install`, called by ``create_app`` for every app it builds, puts the collector's policy
behind them (``app.dependency_overrides``), from ``[web]`` and the accounts of ``server/web/auth.py``:

- reading: open on the network, or with ``web.view_requires_login`` a login session or an API token;
- changing (metadata, imports, device commands, acknowledging or resolving alerts): a ``staff`` or
  ``admin`` session or API token, and a cookie session must also send its CSRF token
  (``X-CSRF-Token`` header); a bearer token carries no cookie, so it needs none.

Who is asking is worked out once per request (``amgs.server.web.context.who``, from the accounts).
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request

from amgs.server.web.auth import Principal, check_csrf
from amgs.server.web.context import require
from amgs.server.web.context import who as current


def require_viewer() -> Principal | None:
    """Reading data (the policy is installed by :func:`install`)."""


def require_editor() -> Principal | None:
    """Changing state (the policy is installed by :func:`install`)."""


def viewer(request: Request) -> Principal | None:
    who = current(request)
    if who is None and request.app.state.config.web.view_requires_login:
        raise HTTPException(401, "log in (or send an API token) to view this collector")
    return who


def editor(request: Request) -> Principal:
    who = require(request, "can_act", "do this", "staff or admin")
    check_csrf(request, who)
    return who


def install(app: FastAPI) -> None:
    app.dependency_overrides[require_viewer] = viewer
    app.dependency_overrides[require_editor] = editor
