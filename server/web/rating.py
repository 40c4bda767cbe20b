"""Blinded scoring (``/rate``, role ``rater``, also staff and admin) and the agreement page (``/agreement``).

Blinding: the scoring page and every response it receives name an item only by the session's opaque
token (``server/rating/sessions.py``): no cage, animal, group, device, time, model score or file name.
Images are the pool's pixel-only copies, sent without Last-Modified/ETag (a file time could date the
crop) and with ``Cache-Control: no-store``. The agreement page and its API are ordinary dashboard views.
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from amgs.server.rating import data as rating_data
from amgs.server.rating import sessions
from amgs.server.rating.agreement import AU_NAMES, CSV_COLUMNS, GROUPINGS
from amgs.server.rating.export import write_export

from .auth import Principal, check_csrf
from .context import (
    TEMPLATES_DIR,
    LoginRequired,
    WebContext,
    api_viewer,
    context,
    page_viewer,
    who,
)

router = APIRouter(tags=["rating"])
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
Ctx = Annotated[WebContext, Depends(context)]
Viewer = Annotated[Principal | None, Depends(api_viewer)]
NO_STORE = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

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


def _rater(request: Request) -> Principal:
    p = who(request)
    if p is None:
        raise HTTPException(401, "log in as a rater to score")
    if not p.can_rate:
        raise HTTPException(403, f"user {p.username!r} has role {p.role!r}: rater, staff or admin needed")
    return p


def _rater_acting(request: Request) -> Principal:
    p = _rater(request)
    check_csrf(request, p)
    return p


def _staff_reader(request: Request) -> Principal:
    """Downloads of the training set: staff or admin (a GET changes nothing, so no CSRF token)."""
    p = who(request)
    if p is None:
        raise HTTPException(401, "log in as staff to download the rated faces")
    if not p.can_act:
        raise HTTPException(403, f"user {p.username!r} has role {p.role!r}: staff or admin needed")
    return p


Rater = Annotated[Principal, Depends(_rater)]
RaterActing = Annotated[Principal, Depends(_rater_acting)]


def _current(ctx: WebContext, p: Principal) -> sessions.SessionRef:
    row = ctx.conn.execute(
        "SELECT session_id FROM rater_sessions WHERE rater = ? AND ended_at IS NULL ORDER BY session_id DESC LIMIT 1",
        [p.username],
    ).fetchone()
    if row is None:
        raise HTTPException(409, "no scoring session open: reload the scoring page")
    return sessions.SessionRef(row[0], p.username)


# ------------------------------------------------------------------ pages


def _page(request: Request, ctx: WebContext, user, name: str, page: str, **extra):
    return templates.TemplateResponse(
        request,
        name,
        {
            "title": ctx.web.title,
            "root": request.scope.get("root_path", ""),
            "page": page,
            "user": user,
            "csrf": user.csrf if user else "",
            "open_alerts": 0,
            **extra,
        },
        headers=NO_STORE if page == "rate" else None,
    )


@router.get("/rate", response_class=HTMLResponse, include_in_schema=False)
def rate_page(request: Request, ctx: Ctx):
    p = who(request)
    if p is None:
        raise LoginRequired("/rate")
    if not p.can_rate:
        raise HTTPException(403, f"user {p.username!r} has role {p.role!r}: ask an admin for the rater role")
    guide = [(k, AU_NAMES[k], *AU_GUIDE[k]) for k in AU_GUIDE]
    return _page(request, ctx, p, "rate.html", "rate", guide=guide)


@router.get("/agreement", response_class=HTMLResponse, include_in_schema=False)
def agreement_page(request: Request, ctx: Ctx, viewer: Annotated[Principal | None, Depends(page_viewer)]):
    return _page(
        request,
        ctx,
        viewer,
        "agreement.html",
        "agreement",
        cutoff=ctx.config.rating.human_pain_cutoff,
        groupings=GROUPINGS,
    )


# ------------------------------------------------------------------ scoring API (blinded)


@router.post("/api/rating/session")
def open_session(ctx: Ctx, p: RaterActing) -> dict[str, Any]:
    """Resume this rater's session or start one; the view of the first item not yet rated."""
    ref = sessions.open_session(ctx.conn, p.username, ctx.config.rating, ctx.now())
    if ref is None:
        return {"pos": 0, "total": 0, "done": 0, "token": None, "values": None}
    return sessions.view(ctx.conn, ref)


@router.get("/api/rating/session/{pos}")
def session_position(ctx: Ctx, p: Rater, pos: int) -> dict[str, Any]:
    return sessions.view(ctx.conn, _current(ctx, p), pos)


@router.post("/api/rating/rate/{token}")
def rate(ctx: Ctx, p: RaterActing, token: str, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    """Store one rating: ``{"au": {"ot": 0|1|2|null, ...}, "unscorable": false, "duration_ms": 3100}``;
    answers the view of the next item to rate."""
    try:
        return sessions.submit(
            ctx.conn,
            _current(ctx, p),
            token,
            body.get("au"),
            bool(body.get("unscorable", False)),
            body.get("duration_ms") if isinstance(body.get("duration_ms"), int) else None,
            ctx.config.rating.raters_per_item,
            ctx.now(),
        )
    except sessions.RatingError as e:
        raise HTTPException(400, str(e)) from None


@router.get("/api/rating/image/{token}")
def image(ctx: Ctx, p: Rater, token: str) -> Response:
    rel = sessions.image_path(ctx.conn, _current(ctx, p), token)
    if rel is None:
        raise HTTPException(404, "no such image in this session")
    try:
        data = (Path(ctx.config.storage.state_dir) / rel).read_bytes()
    except OSError:
        raise HTTPException(404, "image no longer available") from None
    return Response(data, media_type="image/jpeg", headers=NO_STORE)


# ------------------------------------------------------------------ agreement (not blinded: staff views)


def _summary(ctx: WebContext, by: str, start: float | None, end: float | None, model: str | None) -> dict:
    try:
        return rating_data.summary(ctx.conn, ctx.config, by, start=start, end=end, model=model)
    except ValueError as e:
        raise HTTPException(400, str(e)) from None


@router.get("/api/rating/agreement")
def agreement(
    ctx: Ctx,
    _: Viewer,
    by: Annotated[str, Query(description=f"one of {', '.join(GROUPINGS)}")] = "all",
    start: float | None = None,
    end: float | None = None,
    model: str | None = None,
) -> dict[str, Any]:
    """Model vs human and human vs human agreement per group, with 95 % intervals and counts."""
    return _summary(ctx, by, start, end, model)


@router.get("/api/rating/agreement.csv")
def agreement_csv(
    ctx: Ctx,
    _: Viewer,
    by: str = "all",
    start: float | None = None,
    end: float | None = None,
    model: str | None = None,
) -> Response:
    """The same numbers as ``/api/rating/agreement``, one row per group x comparison x metric."""
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in rating_data.tidy(_summary(ctx, by, start, end, model)):
        w.writerow({k: "" if v is None else v for k, v in row.items()})
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="agreement-{by}.csv"'},
    )


@router.get("/api/rating/export.zip")
def export_zip(ctx: Ctx, _: Annotated[Principal, Depends(_staff_reader)]) -> Response:
    """The rated crops as a training set (``amgs server export-ratings``), zipped."""
    items, ratings = rating_data.export_records(
        ctx.conn, ctx.config.storage.state_dir, ctx.config.storage.backups_dir
    )
    tmp = Path(tempfile.mkdtemp(prefix="amgs-ratings-"))
    try:
        write_export(
            tmp / "export",
            items,
            ratings,
            ctx.config.rating.human_pain_cutoff,
            timezone=ctx.config.photoperiod.timezone,
            now=ctx.now(),
        )
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted((tmp / "export").rglob("*")):
                if f.is_file():
                    z.write(f, f"amgs-ratings/{f.relative_to(tmp / 'export')}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Response(
        buf.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="amgs-ratings.zip"'},
    )


@router.get("/rate/stopped", response_class=HTMLResponse, include_in_schema=False)
def rate_stopped(request: Request, ctx: Ctx):
    return templates.TemplateResponse(
        request, "rate_stopped.html", {"root": request.scope.get("root_path", "")}, headers=NO_STORE
    )
