"""The collector's one JSON API, under ``/api`` (OpenAPI at ``/openapi.json``): the dashboard's pages
draw from it, and so can scripts, R or pandas.

Time courses, overview, raw scores, crops, exports, devices, gaps, quarantine, study metadata, alerts.
Times in query strings are RFC 3339 (``2026-03-01T08:00:00Z``) or Unix seconds within 1970 .. 2100;
bins are ``5m`` .. ``1d``. A parameter that cannot be used is answered with 400 and a ``detail`` that
starts with its name. Read endpoints depend on ``access.require_viewer``, writes on
``access.require_editor`` (see :mod:`amgs.server.http.access`). "Now" is ``app.state.clock`` (the wall
clock; the demo's accelerated clock in the demo).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, StreamingResponse

from amgs.contract import Command, ContractError, command_topic, utc_now
from amgs.server.query import export, metadata, timecourse
from amgs.server.query.params import QueryError, parse_bin, parse_when
from amgs.server.query.timecourse import iso
from amgs.server.storage.sql import where

from ..alerts.engine import AlertNotFound
from ..web.auth import Principal
from . import views
from .access import require_editor, require_viewer

router = APIRouter(prefix="/api", dependencies=[Depends(require_viewer)])
Viewer = Annotated[Principal | None, Depends(require_viewer)]
Editor = Annotated[Principal | None, Depends(require_editor)]


def _db(request: Request):
    """This thread's sqlite-utils Database."""
    return request.app.state.db.local()


def _conn(request: Request):
    return _db(request).conn


def _now(request: Request) -> float:
    return request.app.state.clock().timestamp()


def _config(request: Request):
    return request.app.state.config


def _fail(e: Exception | str) -> HTTPException:
    return HTTPException(status_code=400, detail=str(e))


def _finite(**constraints) -> Any:
    return Query(allow_inf_nan=False, **constraints)


TimeQ = Annotated[str | None, Query(description="RFC 3339 time or Unix seconds (1970 .. 2100)")]
BinQ = Annotated[str, Query(description="bin width: 5m .. 1d (multiple of 5 min)")]
EventQ = Annotated[
    str | None, Query(description="align to hours since the first event of this kind (e.g. surgery)")
]
HoursQ = Annotated[
    float | None,
    _finite(gt=0, le=24 * 400, description="wall clock: the last this many hours up to `end` (default now)"),
]
BeforeQ = Annotated[
    float, _finite(ge=0, le=24 * 30, description="event-aligned: hours before the event (without start)")
]
AfterQ = Annotated[
    float, _finite(gt=0, le=24 * 90, description="event-aligned: hours after the event (without end)")
]
BaselineQ = Annotated[
    float | None,
    _finite(
        ge=0,
        le=24 * 30,
        description="hours before the event forming each animal's baseline (delta_amgs); wall clock: the "
        "baseline before the first surgery, for reference",
    ),
]
FormatQ = Annotated[str, Query(pattern="^(json|csv)$", description="json, or csv (tidy long format)")]
RecordBody = Body(..., description="the record's fields (see docs/server.md)")
CommentBody = Annotated[str, Body(embed=True, max_length=2000)]


def _times(start: str | None, end: str | None) -> tuple[float | None, float | None]:
    return parse_when(start, None, "start"), parse_when(end, None, "end")


def _maybe_csv(result: dict[str, Any], fmt: str, name: str):
    if fmt == "csv":
        return _csv(export.timecourse_csv(result), f"{name}.csv")
    return result


def _csv(chunks, filename: str) -> StreamingResponse:
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# ------------------------------------------------------------------ who, overview


@router.get("/me", summary="Who is asking: user name and role (both null when anonymous)")
def get_me(who: Viewer) -> dict[str, Any]:
    return {"user": who.username if who else None, "role": who.role if who else None}


@router.get("/overview", summary="Every cage: state, open alerts, current figures, hourly sparkline, devices")
def get_overview(request: Request, hours: Annotated[int, Query(ge=1, le=24 * 14)] = 24) -> dict[str, Any]:
    return views.facility_overview(_conn(request), _config(request).alerts, _now(request), hours)


# ------------------------------------------------------------------ time courses


@dataclass
class SeriesQuery:
    """The query parameters every single-subject time course takes (a FastAPI dependency)."""

    start: TimeQ = None
    end: TimeQ = None
    hours: HoursQ = None
    bin: BinQ = "1h"
    event: EventQ = None
    baseline_h: BaselineQ = None
    hours_before: BeforeQ = 24.0
    hours_after: AfterQ = 72.0


def _subject_series(
    request: Request, q: SeriesQuery, *, cage_id: str | None, animal_id: str | None
) -> dict[str, Any]:
    """A cage's or an animal's time course with the cage's thresholds and recent alerts."""
    conn, now = _conn(request), _now(request)
    t0, t1 = _times(q.start, q.end)
    if q.hours is not None and not q.event and t0 is None:
        t0 = (t1 if t1 is not None else now) - q.hours * 3600
    common = dict(
        start=t0,
        end=t1,
        bin_s=parse_bin(q.bin),
        now=now,
        photoperiod=_config(request).photoperiod,
        event_kind=q.event or None,
        baseline_hours=q.baseline_h or None,
        hours_before=q.hours_before,
        hours_after=q.hours_after,
    )
    if animal_id is not None:
        animal = timecourse.animal_row(conn, animal_id)
        if cage_id is not None and animal["cage_id"] != cage_id:
            raise QueryError(
                f"animal: {animal_id!r} is not in cage {cage_id!r} (it is in {animal['cage_id']!r})"
            )
        out = timecourse.animal_timecourse(conn, animal_id, **common)
        cage_id = animal["cage_id"]
    else:
        out = timecourse.cage_timecourse(conn, cage_id, **common)
    out["thresholds"] = views.thresholds(_config(request).alerts)
    out["alerts"] = views.alerts_with_history(_db(request), None, 20, cage_id=cage_id) if cage_id else []
    return out


@router.get("/timecourse/cage/{cage_id}", summary="Time course of one cage (or one of its animals)")
def get_cage_timecourse(
    request: Request,
    cage_id: str,
    q: Annotated[SeriesQuery, Depends()],
    animal: Annotated[
        str | None, Query(description="one animal of this cage instead of the whole cage")
    ] = None,
    format: FormatQ = "json",
):
    try:
        out = _subject_series(request, q, cage_id=cage_id, animal_id=animal)
    except QueryError as e:
        raise _fail(e) from None
    return _maybe_csv(out, format, f"cage-{cage_id}" + (f"-{animal}" if animal else ""))


@router.get("/timecourse/animal/{animal_id}", summary="Time course of one animal")
def get_animal_timecourse(
    request: Request, animal_id: str, q: Annotated[SeriesQuery, Depends()], format: FormatQ = "json"
):
    try:
        out = _subject_series(request, q, cage_id=None, animal_id=animal_id)
    except QueryError as e:
        raise _fail(e) from None
    return _maybe_csv(out, format, f"animal-{animal_id}")


GroupEventQ = Annotated[
    str | None, Query(description="align each animal to its own first event of this kind ('' = wall clock)")
]


def _group_curves(
    request: Request, groups: list[str], bin, event, baseline_h, hours_before, hours_after, start, end
) -> dict[str, dict[str, Any]]:
    bin_s = parse_bin(bin)
    t0, t1 = _times(start, end)
    return {
        g: timecourse.group_timecourse(
            _conn(request),
            g,
            bin_s=bin_s,
            now=_now(request),
            start=t0,
            end=t1,
            event_kind=event or None,
            baseline_hours=baseline_h or None,
            hours_before=hours_before,
            hours_after=hours_after,
        )
        for g in groups
    }


@router.get(
    "/timecourse/group/{group_id}", summary="Group mean +/- SEM over animals, with each animal's series"
)
def get_group_timecourse(
    request: Request,
    group_id: str,
    bin: BinQ = "1h",
    event: GroupEventQ = "surgery",
    baseline_h: BaselineQ = None,
    hours_before: BeforeQ = 24.0,
    hours_after: AfterQ = 72.0,
    start: TimeQ = None,
    end: TimeQ = None,
    format: FormatQ = "json",
):
    try:
        result = _group_curves(
            request, [group_id], bin, event, baseline_h, hours_before, hours_after, start, end
        )[group_id]
    except QueryError as e:
        raise _fail(e) from None
    return _maybe_csv(result, format, f"group-{group_id}")


@router.get(
    "/timecourse/groups",
    summary="Several groups side by side: mean +/- SEM over animals (the laparotomy vs sham vs analgesic figure)",
)
def get_groups_timecourse(
    request: Request,
    group: Annotated[list[str], Query(description="group ids; repeat for several")] = [],  # noqa: B006
    bin: BinQ = "1h",
    event: GroupEventQ = "surgery",
    baseline_h: BaselineQ = None,
    hours_before: BeforeQ = 24.0,
    hours_after: AfterQ = 72.0,
    start: TimeQ = None,
    end: TimeQ = None,
    per_animal: Annotated[bool, Query(description="include each animal's series")] = False,
    format: Annotated[
        str,
        Query(
            pattern="^(json|csv|table)$",
            description="json; csv (tidy long: one row per series, bin and metric); table (CSV, one row per "
            "group and bin with mean and SEM columns)",
        ),
    ] = "json",
):
    if not group:
        raise _fail("group: name at least one group: ?group=laparotomy&group=sham")
    try:
        curves = _group_curves(request, group, bin, event, baseline_h, hours_before, hours_after, start, end)
    except QueryError as e:
        raise _fail(e) from None
    name = "amgs-groups-" + "-".join(group)
    if format == "table":
        return _csv(export.group_table_csv(curves), f"{name}.csv")
    if format == "csv":
        return _csv(export.groups_csv(curves), f"{name}.csv")
    if not per_animal:
        for c in curves.values():
            c.pop("per_animal", None)
    return {"groups": curves}


# ------------------------------------------------------------------ raw scores, crops, exports


@router.get("/scores", summary="Raw score records (newest first)")
def get_scores(
    request: Request,
    cage_id: str | None = None,
    animal_id: str | None = None,
    device_id: str | None = None,
    start: TimeQ = None,
    end: TimeQ = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> list[dict[str, Any]]:
    try:
        t0, t1 = _times(start, end)
    except QueryError as e:
        raise _fail(e) from None
    clause, params = where(
        {"s.cage_id": cage_id or None, "s.animal_id": animal_id or None, "s.device_id": device_id or None},
        ("s.t >= ?", [0.0 if t0 is None else t0]),
        ("s.t < ?", [time.time() + 1 if t1 is None else t1]),
    )
    return list(
        _db(request).query(
            "SELECT s.*, c.msg_id IS NOT NULL AS crop_stored FROM scores s "
            f"LEFT JOIN crops c ON c.msg_id = s.msg_id {clause} ORDER BY s.t DESC LIMIT ?",
            [*params, limit],
        )
    )


@router.get("/crops/{msg_id}", summary="The JPEG face crop of a score", response_class=FileResponse)
def get_crop(request: Request, msg_id: str):
    row = next(_db(request).query("SELECT path FROM crops WHERE msg_id = ?", [msg_id]), None)
    if row is None:
        raise HTTPException(404, f"no crop stored for score {msg_id}")
    state_dir = Path(_config(request).storage.state_dir).resolve()
    path = (state_dir / row["path"]).resolve()
    if state_dir not in path.parents:  # a stored path never leaves the state directory
        raise HTTPException(404, f"no crop stored for score {msg_id}")
    if not path.is_file():
        raise HTTPException(404, f"crop file of {msg_id} is gone (trimmed by storage.crops_max_total_mb)")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})


@router.get("/crops", summary="Most recent stored crops with their scores (newest first)")
def get_recent_crops(
    request: Request,
    cage_id: str | None = None,
    animal_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 24,
) -> list[dict[str, Any]]:
    clause, params = where({"s.cage_id": cage_id or None, "s.animal_id": animal_id or None})
    rows = list(
        _db(request).query(
            "SELECT s.msg_id, s.captured_at, s.cage_id, s.animal_id, s.device_id, s.amgs, s.p_pain, s.label, "
            "s.needs_review, s.mgs_au, s.outcome, s.unscorable_reason, s.face_box, s.det_score, c.size FROM crops c "
            "JOIN scores s ON s.msg_id = c.msg_id "
            f"{clause} ORDER BY s.t DESC LIMIT ?",
            [*params, limit],
        )
    )
    root = request.scope.get("root_path", "")
    for r in rows:
        r["url"] = f"{root}/api/crops/{r['msg_id']}"
    return rows


@router.get("/export/scores.csv", summary="Raw scores as tidy CSV (one row per image)")
def export_scores(
    request: Request,
    start: TimeQ = None,
    end: TimeQ = None,
    cage_id: str | None = None,
    animal_id: str | None = None,
):
    try:
        t0, t1 = _times(start, end)
    except QueryError as e:
        raise _fail(e) from None
    return _csv(
        export.scores_csv(
            request.app.state.db.connect().conn,
            0.0 if t0 is None else t0,
            time.time() + 1 if t1 is None else t1,
            cage_id,
            animal_id,
        ),
        "scores.csv",
    )


# ------------------------------------------------------------------ devices, gaps, quarantine


@router.get("/devices", summary="Devices: status, last will, queue depth, model, watermark, gaps")
def get_devices(request: Request) -> list[dict[str, Any]]:
    return [views.device_row(r) for r in _db(request).query("SELECT * FROM devices ORDER BY device_id")]


@router.get("/devices/{device_id}", summary="One device with its recent status history and open gaps")
def get_device(request: Request, device_id: str) -> dict[str, Any]:
    db = _db(request)
    out = next(db.query("SELECT * FROM devices WHERE device_id = ?", [device_id]), None)
    if out is None:
        raise HTTPException(404, f"device {device_id!r} has never reported and is not registered")
    out = views.device_row(out)
    out["status_history"] = list(
        db.query(
            "SELECT at, state, reason, queue_depth FROM status_log WHERE device_id = ? ORDER BY t DESC LIMIT 50",
            [device_id],
        )
    )
    out["gaps"] = list(
        db.query("SELECT * FROM seq_gaps WHERE device_id = ? ORDER BY id DESC LIMIT 100", [device_id])
    )
    out["assignments"] = metadata.list_rows(db.conn, "assignments", {"device_id": device_id})
    return out


@router.post(
    "/devices/{device_id}/commands",
    summary="Send a device a command: send_crops (msg_ids), publish_status, resend_from (seq)",
    dependencies=[Depends(require_editor)],
)
def post_device_command(
    request: Request, device_id: str, body: dict[str, Any] = RecordBody
) -> dict[str, Any]:
    runtime = request.app.state.runtime
    if runtime is None:
        raise HTTPException(503, "this server runs without MQTT (serve-api): commands need `amgs server run`")
    row = next(_db(request).query("SELECT site FROM devices WHERE device_id = ?", [device_id]), None)
    if row is None or not row["site"]:
        raise HTTPException(404, f"device {device_id!r} has never reported: its site is unknown")
    try:
        command = Command.build(**{**body, "at": utc_now()})
    except ContractError as e:
        raise _fail(f"not a valid command: {e}") from None
    runtime.publish(command_topic(row["site"], device_id), command.encode(), qos=1, retain=False)
    return command.wire()


@router.get("/gaps", summary="Sequence gaps (scores lost or late upstream)")
def get_gaps(
    request: Request, state: Annotated[str | None, Query(pattern="^(open|filled|lost)$")] = None
) -> list[dict]:
    clause, params = where({"state": state})
    return list(_db(request).query(f"SELECT * FROM seq_gaps {clause} ORDER BY id DESC LIMIT 1000", params))


@router.get("/quarantine", summary="Messages refused, with the reason and the first bytes of the payload")
def get_quarantine(
    request: Request, limit: Annotated[int, Query(ge=1, le=5000)] = 100
) -> list[dict[str, Any]]:
    rows = list(
        _db(request).query(
            "SELECT id, received_at, last_received_at, count, topic, device_id, reason, payload_size, payload "
            "FROM quarantine ORDER BY last_received_at DESC LIMIT ?",
            [limit],
        )
    )
    for r in rows:
        payload = r.pop("payload") or b""
        r["payload_preview"] = payload[:512].decode("utf-8", "replace")
        r["received_at"], r["last_received_at"] = iso(r["received_at"]), iso(r["last_received_at"])
    return rows


# ------------------------------------------------------------------ alerts


@router.get("/alerts", summary="Alerts, newest activity first, each with its full history")
def get_alerts(
    request: Request,
    state: Annotated[str | None, Query(pattern="^(open|acknowledged|resolved)$")] = None,
    cage_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    return views.alerts_with_history(_db(request), state, limit, cage_id=cage_id)


def _act(request: Request, action: str, alert_id: str, who: Principal | None, comment: str) -> dict[str, Any]:
    engine = request.app.state.alert_engine
    try:
        return getattr(engine, action)(alert_id, who.username if who else "api", comment)
    except AlertNotFound as e:
        raise HTTPException(404, str(e)) from None
    except ValueError as e:
        raise HTTPException(409, str(e)) from None


@router.post("/alerts/{alert_id}/acknowledge", summary="Acknowledge an open alert (stops re-notification)")
def acknowledge_alert(
    request: Request, who: Editor, alert_id: str, comment: CommentBody = ""
) -> dict[str, Any]:
    return _act(request, "acknowledge", alert_id, who, comment)


@router.post(
    "/alerts/{alert_id}/resolve", summary="Resolve an alert by hand (it reopens if the condition holds)"
)
def resolve_alert(request: Request, who: Editor, alert_id: str, comment: CommentBody = "") -> dict[str, Any]:
    return _act(request, "resolve", alert_id, who, comment)


# ------------------------------------------------------------------ metadata


@router.get(
    "/meta/{kind}", summary="List sites, rooms, cages, groups, animals, devices, events or assignments"
)
def list_metadata(
    request: Request,
    kind: str,
    cage_id: str | None = None,
    group_id: str | None = None,
    animal_id: str | None = None,
) -> list[dict[str, Any]]:
    filters = {k: v for k, v in (("cage_id", cage_id), ("group_id", group_id), ("animal_id", animal_id)) if v}
    try:
        return metadata.list_rows(_conn(request), kind, filters)
    except metadata.MetadataError as e:
        raise _fail(e) from None
    except Exception as e:  # a filter column the kind does not have
        raise _fail(f"cannot filter {kind} that way: {e}") from None


@router.post(
    "/meta/{kind}", summary="Add or update one metadata record", dependencies=[Depends(require_editor)]
)
def add_metadata(request: Request, kind: str, record: dict[str, Any] = RecordBody) -> dict[str, Any]:
    try:
        return metadata.save(_conn(request), kind, record, _config(request).photoperiod.tz)
    except metadata.MetadataError as e:
        raise _fail(e) from None


@router.delete(
    "/meta/{kind}/{key}", summary="Delete one metadata record", dependencies=[Depends(require_editor)]
)
def delete_metadata(request: Request, kind: str, key: str) -> dict[str, Any]:
    if kind not in metadata.KINDS:
        raise _fail(f"unknown metadata kind {kind!r}")
    if not metadata.delete(_conn(request), kind, key):
        raise HTTPException(404, f"no {kind} record {key!r}")
    return {"deleted": key}


@router.post(
    "/import/{kind}",
    summary="Import a CSV (header = field names) of one metadata kind, all rows or none",
    dependencies=[Depends(require_editor)],
)
async def import_metadata(request: Request, kind: str) -> dict[str, Any]:
    body = await request.body()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail("the CSV must be UTF-8 text") from None
    try:
        n = metadata.import_csv(
            request.app.state.db.connect().conn, kind, text, f"{kind}.csv", _config(request).photoperiod.tz
        )
    except metadata.MetadataError as e:
        raise _fail(e) from None
    return {"kind": kind, "imported": n}
