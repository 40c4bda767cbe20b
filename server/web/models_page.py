"""The dashboard's Models page: registered models with their figures and their agreement with human
ratings per model version, what each device runs, the active-vs-candidate agreement per cage from shadow
scores (and each against human ratings on the same faces), and promoting or abandoning a candidate.

Promote and abandon are two steps: the Models page links (staff and admin only) to a confirmation page
that shows what will change and asks for the device id to be typed; its form posts with the session's
CSRF token, the typed id and the candidate it showed. The change is refused (with a message, never a
crash) when the confirmation does not match, the device is unknown, or its candidate is gone or changed
since the confirmation page was shown. On success the browser returns to the Models page, which shows
the recorded event.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from amgs.server.models import registry
from amgs.server.rating.by_model import MIN_ITEMS, human_agreement
from amgs.sqlite_tx import write_transaction

from .auth import Principal, check_csrf
from .context import LoginRequired, require, who
from .pages import Viewer, _conn, _render, _root

router = APIRouter(include_in_schema=False)
ACTIONS = {"promote": "promoted", "abandon": "abandoned"}


def _when(t: float | None) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if t else ""


def _names(conn) -> dict[str, str]:
    return {r[0]: f"{r[1]} {r[2]}" for r in conn.execute("SELECT sha256, name, version FROM models")}


def _event_rows(conn, names: dict[str, str]) -> list[dict]:
    """The last changes, with an assignment's detail (sha256s as JSON) said in model names."""
    out = []
    for e in registry.events(conn, 10):
        detail = e["detail"] or ""
        if e["action"] == "assigned":
            try:
                shas = json.loads(detail)
                detail = "active: {}; candidate: {}".format(
                    names.get(shas.get("active"), "configured model"),
                    names.get(shas.get("candidate"), "none") if shas.get("candidate") else "none",
                )
            except (ValueError, AttributeError):
                pass
        out.append({**e, "model": names.get(e["sha256"], (e["sha256"] or "")[:16]), "text": detail})
    return out


def _models_page(
    request: Request, viewer: Principal | None, *, notice: str = "", error: str = "", status_code=200
):
    conn = _conn(request)
    models = registry.list_models(conn)
    names = _names(conn)
    response = _render(
        request,
        viewer,
        "models.html",
        "models",
        models=models,
        headline=registry.HEADLINE,
        assignments=registry.assignments(conn),
        agreement=registry.agreement(conn),
        human=human_agreement(conn, request.app.state.config.rating.human_pain_cutoff),
        events=_event_rows(conn, names),
        names=names,
        when=_when,
        notice=notice,
        error=error,
    )
    response.status_code = status_code
    return response


def _event_notice(conn, event_id: int | None) -> str:
    if event_id is None:
        return ""
    row = conn.execute(
        "SELECT action, device_id, sha256, detail, at FROM model_events WHERE id = ?", [event_id]
    ).fetchone()
    if row is None or row[0] not in ACTIONS.values():
        return ""
    action, device, sha, by, at = row
    model = _names(conn).get(sha, (sha or "")[:16])
    what = "is now the active model" if action == "promoted" else "is no longer scored in shadow"
    return (
        f"{action.capitalize()}: {model} {what} on {device} (event {event_id}, by {by or 'unknown'}, "
        f"{_when(at)}). The device receives the new assignment on its command topic."
    )


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, viewer: Viewer, event: int | None = None):
    return _models_page(request, viewer, notice=_event_notice(_conn(request), event))


def _editor(request: Request) -> Principal:
    return require(request, "can_act", "change a device's model", "staff or admin")


def _state(conn, device_id: str) -> tuple[bool, str | None, str | None]:
    """(device known, assigned active sha256, assigned candidate sha256)."""
    pair = registry.assigned(conn, device_id)
    known = pair is not None or (
        conn.execute("SELECT 1 FROM devices WHERE device_id = ?", [device_id]).fetchone() is not None
    )
    return (known, *(pair or (None, None)))


def _problem(conn, action: str, device_id: str) -> tuple[int, str] | None:
    known, _, candidate = _state(conn, device_id)
    if not known:
        return 404, f"No device {device_id!r} is known to this collector."
    if candidate is None:
        return 409, (
            f"Device {device_id!r} has no candidate model to {action} (it may have been promoted or "
            "abandoned already)."
        )
    return None


@router.get("/models/{action}/confirm", response_class=HTMLResponse)
def confirm_page(request: Request, action: str, device_id: str = ""):
    if action not in ACTIONS:
        raise HTTPException(404, "only promote or abandon")
    if who(request) is None:
        raise LoginRequired(f"/models/{action}/confirm?{urlencode({'device_id': device_id})}")
    return _confirm(request, _editor(request), action, device_id)


def _confirm(request: Request, p: Principal, action: str, device_id: str, error: str = "", status_code=200):
    conn = _conn(request)
    problem = _problem(conn, action, device_id)
    if problem:
        return _models_page(request, p, error=problem[1], status_code=problem[0])
    _, active, candidate = _state(conn, device_id)
    names = _names(conn)
    cages = [g for g in registry.agreement(conn, candidate) if g.get("cage_id")]
    on_device = {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT cage_id FROM shadow_scores WHERE device_id = ? AND candidate_sha256 = ?",
            [device_id, candidate],
        )
    }
    human = human_agreement(conn, request.app.state.config.rating.human_pain_cutoff)
    response = _render(
        request,
        p,
        "model_confirm.html",
        "models",
        action=action,
        device_id=device_id,
        active=names.get(active, "the device's configured model")
        if active
        else "the device's configured model",
        candidate=names.get(candidate, candidate[:16]),
        candidate_sha256=candidate,
        cages=[g for g in cages if g["cage_id"] in on_device],
        human=[r for r in human["shadow"] if r["candidate_sha256"] == candidate],
        error=error,
        min_items=MIN_ITEMS,
    )
    response.status_code = status_code
    return response


@router.post("/models/{action}", response_class=HTMLResponse)
def change(
    request: Request,
    action: str,
    device_id: Annotated[str, Form(max_length=200)] = "",
    candidate_sha256: Annotated[str, Form(max_length=64)] = "",
    confirm: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
):
    p = _editor(request)  # who may ask comes first: an anonymous POST learns nothing about the routes
    check_csrf(request, p, csrf_token)
    if action not in ACTIONS:
        raise HTTPException(404, "only promote or abandon")
    conn = _conn(request)
    if confirm.strip() != device_id or not device_id:
        return _confirm(
            request,
            p,
            action,
            device_id,
            error=f"Type the device id {device_id!r} exactly to confirm; nothing was changed.",
            status_code=400,
        )
    with write_transaction(conn):
        problem = _problem(conn, action, device_id)
        if problem is None and _state(conn, device_id)[2] != candidate_sha256:
            problem = (
                409,
                (
                    f"The candidate of {device_id!r} changed after the confirmation page was shown; nothing was "
                    "changed. Look at the page again."
                ),
            )
        if problem is None:
            (registry.promote if action == "promote" else registry.abandon)(conn, device_id, p.username)
            event_id = conn.execute(
                "SELECT max(id) FROM model_events WHERE device_id = ? AND action = ?",
                [device_id, ACTIONS[action]],
            ).fetchone()[0]
    if problem:
        return _models_page(request, p, error=problem[1], status_code=problem[0])
    return RedirectResponse(f"{_root(request)}/models?event={event_id}#model-devices", status_code=303)
