"""JSON (and CSV) endpoints the dashboard pages draw from, under ``/api/web``.

Time courses come from the collector's own queries (``amgs.server.query.timecourse``); this module only
picks parameters, adds alert state, and formats downloads.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from fastapi.responses import FileResponse, Response

from amgs.server.query.timecourse import (
    QueryError,
    Source,
    animal_row,
    animal_source,
    animal_timecourse,
    baseline,
    cage_timecourse,
    first_event,
    group_timecourse,
    iso,
    parse_bin,
)

from ..alerts.engine import AlertNotFound
from . import data
from .auth import Principal
from .context import WebContext, api_actor, api_viewer, context

router = APIRouter(prefix="/api/web", tags=["dashboard"])
Ctx = Annotated[WebContext, Depends(context)]
Viewer = Annotated[Principal | None, Depends(api_viewer)]
Actor = Annotated[Principal, Depends(api_actor)]


def _bad(e: Exception) -> HTTPException:
    return HTTPException(400, str(e))


@router.get("/me")
def me(who: Viewer) -> dict[str, Any]:
    return {"user": who.username if who else None, "role": who.role if who else None}


@router.get("/overview")
def overview(ctx: Ctx, _: Viewer) -> dict[str, Any]:
    return data.facility_overview(ctx.conn, ctx.config.alerts, ctx.now())


@router.get("/cages/{cage_id}/timecourse")
def cage_series(
    ctx: Ctx,
    _: Viewer,
    cage_id: str,
    hours: Annotated[float, Query(gt=0, le=24 * 120)] = 72,
    bin: str = "1h",
    align: Annotated[str, Query(pattern="^(wall|surgery|analgesic|anaesthesia)$")] = "wall",
    baseline_hours: Annotated[float, Query(ge=0, le=24 * 14)] = 24,
    animal: Annotated[
        str | None, Query(description="one animal of the cage instead of the whole cage")
    ] = None,
) -> dict[str, Any]:
    """Wall clock: the last ``hours``. Event-aligned: up to 24 h before to ``hours`` after the first event.
    The baseline (mean over ``baseline_hours`` before the first surgery) is returned in both cases."""
    try:
        bin_s = parse_bin(bin)
        now = ctx.now()
        kind = None if align == "wall" else align
        subject = animal_row(ctx.conn, animal) if animal else None
        if subject is not None and subject["cage_id"] != cage_id:
            raise QueryError(
                f"animal {animal!r} is not in cage {cage_id!r} (it is in {subject['cage_id']!r})"
            )
        start, end = now - hours * 3600, now
        if kind:
            event = first_event(ctx.conn, kind, animal_id=animal, cage_id=cage_id)
            if event is None:
                raise QueryError(
                    f"{'animal ' + repr(animal) if animal else 'cage ' + repr(cage_id)} has no {kind!r} event to align to"
                )
            start, end = event["t"] - min(hours, 24) * 3600, event["t"] + hours * 3600
        common = dict(
            start=start,
            end=end,
            bin_s=bin_s,
            now=now,
            photoperiod=ctx.config.photoperiod,
            event_kind=kind,
            baseline_hours=(baseline_hours or None) if kind else None,
        )
        if subject is not None:
            out = animal_timecourse(ctx.conn, animal, **common)
        else:
            out = cage_timecourse(ctx.conn, cage_id, **common)
    except QueryError as e:
        raise _bad(e) from None
    if out.get("baseline") is None and baseline_hours:
        surgery = first_event(ctx.conn, "surgery", animal_id=animal, cage_id=cage_id)
        if surgery:
            source = animal_source(subject) if subject is not None else Source(cage_id=cage_id)
            out["baseline"] = baseline(ctx.conn, source, surgery["t"], baseline_hours)
    pain = ctx.config.alerts.pain
    out["thresholds"] = {"fraction_pain": pain.fraction_pain, "mean_amgs": pain.mean_amgs}
    out["alerts"] = [a for a in data.alerts_with_history(ctx.db(), None, 50) if a["cage_id"] == cage_id][:20]
    return out


@router.get("/cages/{cage_id}/crops")
def cage_crops(ctx: Ctx, _: Viewer, cage_id: str, limit: Annotated[int, Query(ge=1, le=200)] = 24) -> list:
    return (
        data.recent_crops(ctx.conn, cage_id, min(limit, ctx.web.recent_crops)) if ctx.web.recent_crops else []
    )


@router.get("/crops/{msg_id}.jpg")
def crop_image(ctx: Ctx, _: Viewer, msg_id: str) -> FileResponse:
    row = ctx.conn.execute("SELECT path FROM crops WHERE msg_id = ?", [msg_id]).fetchone()
    state_dir = Path(ctx.config.storage.state_dir).resolve()
    path = (state_dir / row[0]).resolve() if row else None
    if path is None or state_dir not in path.parents or not path.is_file():
        raise HTTPException(404, f"no face crop stored for score {msg_id}")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})


@router.get("/groups")
def groups(ctx: Ctx, _: Viewer) -> list[dict[str, Any]]:
    rows = ctx.conn.execute(
        "SELECT g.group_id, g.name, g.description, g.study, count(a.animal_id) FROM groups g "
        "LEFT JOIN animals a ON a.group_id = g.group_id GROUP BY g.group_id ORDER BY g.group_id"
    ).fetchall()
    return [
        dict(zip(("group_id", "name", "description", "study", "n_animals"), r, strict=True)) for r in rows
    ]


@dataclass(frozen=True)
class GroupParams:
    groups: list[str]
    bin: str
    event: str
    before: float
    after: float
    baseline_hours: float


def group_params(
    group: Annotated[list[str], Query(description="group ids; repeat for several")] = [],  # noqa: B006
    bin: str = "2h",
    event: Annotated[str, Query(pattern="^(surgery|analgesic|anaesthesia)$")] = "surgery",
    before: Annotated[float, Query(ge=0, le=24 * 14)] = 12.0,
    after: Annotated[float, Query(gt=0, le=24 * 60)] = 48.0,
    baseline_hours: Annotated[float, Query(ge=0, le=24 * 14)] = 0.0,
) -> GroupParams:
    if not group:
        raise HTTPException(400, "name at least one group: ?group=laparotomy&group=sham")
    return GroupParams(group, bin, event, before, after, baseline_hours)


Groups = Annotated[GroupParams, Depends(group_params)]


def _group_curves(ctx: WebContext, p: GroupParams) -> dict[str, Any]:
    try:
        bin_s = parse_bin(p.bin)
        return {
            g: group_timecourse(
                ctx.conn,
                g,
                bin_s=bin_s,
                now=ctx.now(),
                event_kind=p.event,
                hours_before=p.before,
                hours_after=p.after,
                baseline_hours=p.baseline_hours or None,
            )
            for g in p.groups
        }
    except QueryError as e:
        raise _bad(e) from None


@router.get("/groups/timecourse")
def group_series(ctx: Ctx, _: Viewer, p: Groups) -> dict[str, Any]:
    """Mean +/- SEM over animals per group, in hours since each animal's own event."""
    curves = _group_curves(ctx, p)
    for c in curves.values():
        c.pop("per_animal", None)
    return {"groups": curves}


CSV_COLUMNS = (
    "group_id",
    "hours_since_event",
    "n_animals",
    "n_images",
    "mean_amgs",
    "sem_amgs",
    "frac_pain",
    "sem_frac_pain",
    "delta_amgs",
    "sem_delta_amgs",
)


@router.get("/groups/timecourse.csv")
def group_csv(ctx: Ctx, _: Viewer, p: Groups) -> Response:
    """Tidy long format: one row per group and bin (R, Prism and pandas read it as is)."""
    curves = _group_curves(ctx, p)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for g, c in curves.items():
        for b in c["bins"]:
            w.writerow([g, b["hours"], *("" if b.get(k) is None else b[k] for k in CSV_COLUMNS[2:])])
    name = "amgs-groups-" + "-".join(p.groups) + ".csv"
    return Response(
        buf.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/devices")
def device_list(ctx: Ctx, _: Viewer) -> dict[str, Any]:
    return {"now": iso(ctx.now()), "devices": data.devices(ctx.conn)}


@router.get("/alerts")
def alert_list(
    ctx: Ctx,
    _: Viewer,
    state: Annotated[str | None, Query(pattern="^(open|acknowledged|resolved)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    return data.alerts_with_history(ctx.db(), state, limit)


def _act(fn, alert_id: str, who: Principal, comment: str) -> dict[str, Any]:
    try:
        return fn(alert_id, who.username, comment)
    except AlertNotFound as e:
        raise HTTPException(404, str(e)) from None
    except ValueError as e:
        raise HTTPException(409, str(e)) from None


@router.post("/alerts/{alert_id}/acknowledge")
def acknowledge(
    ctx: Ctx, who: Actor, alert_id: str, comment: Annotated[str, Body(embed=True, max_length=2000)] = ""
) -> dict[str, Any]:
    return _act(ctx.engine.acknowledge, alert_id, who, comment)


@router.post("/alerts/{alert_id}/resolve")
def resolve(
    ctx: Ctx, who: Actor, alert_id: str, comment: Annotated[str, Body(embed=True, max_length=2000)] = ""
) -> dict[str, Any]:
    return _act(ctx.engine.resolve, alert_id, who, comment)
