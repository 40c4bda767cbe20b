"""Blinded scoring and agreement, under ``/api/rating`` (part of the collector's one API).

Scoring (role ``rater``, also staff and admin; state changes need the session's CSRF token): every
request and response names a face only by the session's opaque token (``server/rating/sessions.py``),
never its cage, animal, group, device, time, model score or file. Images are the pool's pixel-only
copies, sent with ``Cache-Control: no-store`` and without Last-Modified/ETag (a file time could date the
crop). Agreement reads follow the API's viewing policy; the training-set zip needs staff or admin.
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
from fastapi.responses import Response

from amgs.server.rating import data as rating_data
from amgs.server.rating import sessions
from amgs.server.rating.agreement import CSV_COLUMNS, GROUPINGS
from amgs.server.rating.export import write_export

from ..web.auth import Principal, check_csrf
from ..web.context import require, who
from .access import require_viewer

router = APIRouter(prefix="/api/rating", tags=["rating"])
NO_STORE = {"Cache-Control": "no-store"}


def _conn(request: Request):
    return request.app.state.db.local().conn


def _config(request: Request):
    return request.app.state.config


def _now(request: Request) -> float:
    return request.app.state.clock().timestamp()


def _rater(request: Request) -> Principal:
    return require(request, "can_rate", "score faces", "rater, staff or admin")


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
Viewer = Annotated[Principal | None, Depends(require_viewer)]


def _current(request: Request, p: Principal) -> sessions.SessionRef:
    row = (
        _conn(request)
        .execute(
            "SELECT session_id FROM rater_sessions WHERE rater = ? AND ended_at IS NULL ORDER BY session_id DESC LIMIT 1",
            [p.username],
        )
        .fetchone()
    )
    if row is None:
        raise HTTPException(409, "no scoring session open: reload the scoring page")
    return sessions.SessionRef(row[0], p.username)


# ------------------------------------------------------------------ scoring (blinded)


@router.post("/session", summary="Resume or start this rater's session (blinded)")
def open_session(request: Request, p: RaterActing) -> dict[str, Any]:
    """The view of the first face not yet scored: ``{pos, total, done, token, values}`` and nothing else."""
    ref = sessions.open_session(_conn(request), p.username, _config(request).rating, _now(request))
    if ref is None:
        return {"pos": 0, "total": 0, "done": 0, "token": None, "values": None}
    return sessions.view(_conn(request), ref)


@router.get("/session/{pos}", summary="The view at a position of this rater's session (blinded)")
def session_position(request: Request, p: Rater, pos: int) -> dict[str, Any]:
    return sessions.view(_conn(request), _current(request, p), pos)


@router.post("/rate/{token}", summary="Store one rating; answers the next view (blinded)")
def rate(
    request: Request, p: RaterActing, token: str, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """``{"au": {"ot": 0|1|2|null, "nb": ..., "cb": ..., "ep": ..., "wc": ...}, "unscorable": false,
    "duration_ms": 3100}`` (null = not visible)."""
    duration = body.get("duration_ms")
    try:
        return sessions.submit(
            _conn(request),
            _current(request, p),
            token,
            body.get("au"),
            bool(body.get("unscorable", False)),
            duration if isinstance(duration, int) and not isinstance(duration, bool) else None,
            _config(request).rating.raters_per_item,
            _now(request),
        )
    except sessions.RatingError as e:
        raise HTTPException(400, str(e)) from None


@router.get("/image/{token}", summary="The blinded image behind a token of this rater's session")
def image(request: Request, p: Rater, token: str) -> Response:
    rel = sessions.image_path(_conn(request), _current(request, p), token)
    if rel is None:
        raise HTTPException(404, "no such image in this session")
    try:
        data = (Path(_config(request).storage.state_dir) / rel).read_bytes()
    except OSError:
        raise HTTPException(404, "image no longer available") from None
    return Response(data, media_type="image/jpeg", headers=NO_STORE)


# ------------------------------------------------------------------ agreement (not blinded)


def _summary(request: Request, by: str, start: float | None, end: float | None, model: str | None) -> dict:
    try:
        return rating_data.summary(_conn(request), _config(request), by, start=start, end=end, model=model)
    except ValueError as e:
        raise HTTPException(400, f"by: {e}") from None


ByQ = Annotated[str, Query(description=f"one of {', '.join(GROUPINGS)}")]
TQ = Annotated[float | None, Query(allow_inf_nan=False, description="capture time, Unix seconds")]


@router.get("/agreement", summary="Model vs human and human vs human agreement, with 95 % intervals")
def agreement(
    request: Request, _: Viewer, by: ByQ = "all", start: TQ = None, end: TQ = None, model: str | None = None
) -> dict[str, Any]:
    """Per group (model version, device, cage, cage group, week or month of capture): Pearson r,
    ICC(A,1), Bland-Altman, pain kappa / accuracy / sensitivity / specificity, inter-rater ICC(2,1) and
    weighted kappa per unit, intra-rater ICC; each with its interval and the number of items behind it."""
    return _summary(request, by, start, end, model)


@router.get("/agreement.csv", summary="The same numbers as tidy CSV")
def agreement_csv(
    request: Request, _: Viewer, by: ByQ = "all", start: TQ = None, end: TQ = None, model: str | None = None
) -> Response:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in rating_data.tidy(_summary(request, by, start, end, model)):
        w.writerow({k: "" if v is None else v for k, v in row.items()})
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="agreement-{by}.csv"'},
    )


@router.get("/export.zip", summary="The rated faces as a training set (amgs server export-ratings), zipped")
def export_zip(request: Request, _: Annotated[Principal, Depends(_staff_reader)]) -> Response:
    config = _config(request)
    items, ratings = rating_data.export_records(
        _conn(request), config.storage.state_dir, config.storage.backups_dir
    )
    tmp = Path(tempfile.mkdtemp(prefix="amgs-ratings-"))
    try:
        write_export(
            tmp / "export",
            items,
            ratings,
            config.rating.human_pain_cutoff,
            timezone=config.photoperiod.timezone,
            now=_now(request),
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
