"""The blinded scoring page (``/rate``, role ``rater``; staff and admin too) and the agreement page
(``/agreement``). Their data come from ``/api/rating`` (``amgs.server.http.rating``).

The scoring page is a standalone template: no dashboard navigation, no alert badge, nothing about the
faces but what the API gives it (opaque tokens, progress). It is sent with ``Cache-Control: no-store``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from amgs.server.rating.agreement import AU_NAMES, GROUPINGS

from .auth import Principal
from .context import TEMPLATES_DIR, LoginRequired, page_viewer, web_config, who

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
NO_STORE = {"Cache-Control": "no-store"}

# Short descriptions of each action unit and level, written for this project after Langford et al.
# (2010, Nat Methods 7:447) and the NC3Rs MGS manual's definitions (no third-party text or images).
AU_GUIDE = {
    "ot": (
        "Narrowing of the eye opening; the lids squeeze, a wrinkle may run around the eye.",
        ["eye open, round, not narrowed", "eye partly narrowed", "eye narrowed by half or more, or closed"],
    ),
    "nb": (
        "A rounded swelling of the skin on the bridge of the nose.",
        ["no bulge, nose line smooth", "slight bulge", "clear, rounded bulge"],
    ),
    "cb": (
        "The cheek between eye and whisker pad looks convex, as if pushed out.",
        ["cheek flat", "cheek slightly rounded", "cheek clearly bulging"],
    ),
    "ep": (
        "Ears pulled back and apart from their relaxed position, turned outward or folded.",
        [
            "ears upright, facing forward",
            "ears partly turned back or apart",
            "ears clearly pulled back, flat or apart",
        ],
    ),
    "wc": (
        "Whiskers leave their relaxed, drooping curve: pulled back against the face or stiffly forward, often clumped.",
        [
            "whiskers relaxed, natural curve",
            "whiskers somewhat pulled back or forward",
            "whiskers clearly pulled back or standing stiff, clumped",
        ],
    ),
}


def _page(request: Request, user, name: str, page: str, headers=None, open_alerts: int = 0, **extra):
    return templates.TemplateResponse(
        request,
        name,
        {
            "title": web_config(request).title,
            "root": request.scope.get("root_path", ""),
            "page": page,
            "user": user,
            "csrf": user.csrf if user else "",
            "open_alerts": open_alerts,
            **extra,
        },
        headers=headers,
    )


@router.get("/rate", response_class=HTMLResponse)
def rate_page(request: Request):
    p = who(request)
    if p is None:
        raise LoginRequired("/rate")
    if not p.can_rate:
        raise HTTPException(403, f"user {p.username!r} has role {p.role!r}: ask an admin for the rater role")
    guide = [(k, AU_NAMES[k], *AU_GUIDE[k]) for k in AU_GUIDE]
    return _page(request, p, "rate.html", "rate", headers=NO_STORE, guide=guide)


@router.get("/rate/stopped", response_class=HTMLResponse)
def rate_stopped(request: Request):
    return templates.TemplateResponse(
        request, "rate_stopped.html", {"root": request.scope.get("root_path", "")}, headers=NO_STORE
    )


@router.get("/agreement", response_class=HTMLResponse)
def agreement_page(request: Request, viewer: Annotated[Principal | None, Depends(page_viewer)]):
    conn = request.app.state.db.local().conn
    return _page(
        request,
        viewer,
        "agreement.html",
        "agreement",
        open_alerts=conn.execute("SELECT count(*) FROM alerts WHERE state = 'open'").fetchone()[0],
        cutoff=request.app.state.config.rating.human_pain_cutoff,
        groupings=GROUPINGS,
    )
