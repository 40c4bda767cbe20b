"""The JSON API under ``/api``: time courses, overview, devices, gaps, quarantine, metadata, crops, exports.

Times in query strings are RFC 3339 (``2026-03-01T08:00:00Z``) or Unix seconds; bins are ``5m`` .. ``1d``.
Read endpoints depend on ``access.require_viewer``, writes on ``access.require_editor``.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, StreamingResponse

from amgs.contract import Command, ContractError, command_topic, utc_now
from amgs.server.query import export, metadata, timecourse
from amgs.server.query.timecourse import QueryError, iso, parse_bin, parse_when

from .access import require_editor, require_viewer

router = APIRouter(prefix="/api", dependencies=[Depends(require_viewer)])


def _conn(request: Request):
    return request.app.state.db.local().conn


def _photoperiod(request: Request):
    return request.app.state.config.photoperiod


def _fail(e: Exception) -> HTTPException:
    return HTTPException(status_code=400, detail=str(e))


def _rows(cur) -> list[dict[str, Any]]:
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


TimeQ = Annotated[str | None, Query(description="RFC 3339 time or Unix seconds")]
BinQ = Annotated[str, Query(description="bin width: 5m .. 1d (multiple of 5 min)")]
EventQ = Annotated[str | None, Query(description="align to hours since this event kind (e.g. surgery)")]
RecordBody = Body(..., description="the record's fields (see docs/server.md)")
BaselineQ = Annotated[
    float | None, Query(ge=0, le=24 * 30, description="hours before the event forming the baseline")
]


# ------------------------------------------------------------------ time courses


@router.get("/overview", summary="Every cage: current figures, hourly sparkline, devices")
def get_overview(request: Request, hours: int = Query(24, ge=1, le=24 * 14)) -> dict[str, Any]:
    now = time.time()
    return {"now": iso(now), "cages": timecourse.overview(_conn(request), now, hours)}


def _subject_timecourse(
    request: Request, query, subject_id: str, start, end, bin, event, baseline_h, format, name
):
    """One cage's or one animal's time course (the two endpoints differ only in the query they run)."""
    try:
        result = query(
            _conn(request),
            subject_id,
            start=parse_when(start, None) if start else None,
            end=parse_when(end, None) if end else None,
            bin_s=parse_bin(bin),
            now=time.time(),
            photoperiod=_photoperiod(request),
            event_kind=event,
            baseline_hours=baseline_h,
        )
    except QueryError as e:
        raise _fail(e) from None
    return _maybe_csv(result, format, f"{name}-{subject_id}")


@router.get("/timecourse/cage/{cage_id}", summary="Time course of one cage")
def get_cage_timecourse(
    request: Request,
    cage_id: str,
    start: TimeQ = None,
    end: TimeQ = None,
    bin: BinQ = "1h",
    event: EventQ = None,
    baseline_h: BaselineQ = None,
    format: str = Query("json", pattern="^(json|csv)$"),
):
    return _subject_timecourse(
        request, timecourse.cage_timecourse, cage_id, start, end, bin, event, baseline_h, format, "cage"
    )


@router.get("/timecourse/animal/{animal_id}", summary="Time course of one animal")
def get_animal_timecourse(
    request: Request,
    animal_id: str,
    start: TimeQ = None,
    end: TimeQ = None,
    bin: BinQ = "1h",
    event: EventQ = None,
    baseline_h: BaselineQ = None,
    format: str = Query("json", pattern="^(json|csv)$"),
):
    return _subject_timecourse(
        request, timecourse.animal_timecourse, animal_id, start, end, bin, event, baseline_h, format, "animal"
    )


@router.get("/timecourse/group/{group_id}", summary="Group mean +/- SEM over animals")
def get_group_timecourse(
    request: Request,
    group_id: str,
    bin: BinQ = "1h",
    event: str | None = Query("surgery", description="align each animal to its own event ('' = wall clock)"),
    baseline_h: BaselineQ = None,
    hours_before: float = Query(24, ge=0, le=24 * 30),
    hours_after: float = Query(72, gt=0, le=24 * 90),
    start: TimeQ = None,
    end: TimeQ = None,
    format: str = Query("json", pattern="^(json|csv)$"),
):
    try:
        result = timecourse.group_timecourse(
            _conn(request),
            group_id,
            bin_s=parse_bin(bin),
            now=time.time(),
            start=parse_when(start, None) if start else None,
            end=parse_when(end, None) if end else None,
            event_kind=event or None,
            baseline_hours=baseline_h,
            hours_before=hours_before,
            hours_after=hours_after,
        )
    except QueryError as e:
        raise _fail(e) from None
    return _maybe_csv(result, format, f"group-{group_id}")


def _maybe_csv(result: dict[str, Any], fmt: str, name: str):
    if fmt == "csv":
        return StreamingResponse(
            export.timecourse_csv(result),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return result


# ------------------------------------------------------------------ raw scores, crops, exports


@router.get("/scores", summary="Raw score records (newest first)")
def get_scores(
    request: Request,
    cage_id: str | None = None,
    animal_id: str | None = None,
    device_id: str | None = None,
    start: TimeQ = None,
    end: TimeQ = None,
    limit: int = Query(100, ge=1, le=10000),
) -> list[dict[str, Any]]:
    try:
        t1 = parse_when(end, time.time() + 1)
        t0 = parse_when(start, 0.0)
    except QueryError as e:
        raise _fail(e) from None
    where, params = ["s.t >= ?", "s.t < ?"], [t0, t1]
    for col, value in (("cage_id", cage_id), ("animal_id", animal_id), ("device_id", device_id)):
        if value:
            where.append(f"s.{col} = ?")
            params.append(value)
    cur = _conn(request).execute(
        "SELECT s.*, c.msg_id IS NOT NULL AS crop_stored FROM scores s LEFT JOIN crops c ON c.msg_id = s.msg_id "
        f"WHERE {' AND '.join(where)} ORDER BY s.t DESC LIMIT ?",
        [*params, limit],
    )
    return _rows(cur)


@router.get("/crops/{msg_id}", summary="The JPEG face crop of a score", response_class=FileResponse)
def get_crop(request: Request, msg_id: str):
    row = _conn(request).execute("SELECT path FROM crops WHERE msg_id = ?", [msg_id]).fetchone()
    if row is None:
        raise HTTPException(404, f"no crop stored for score {msg_id}")
    path = request.app.state.config.storage.state_dir / row[0]
    if not path.is_file():
        raise HTTPException(404, f"crop file of {msg_id} is gone (trimmed by storage.crops_max_total_mb)")
    return FileResponse(path, media_type="image/jpeg")


@router.get("/crops", summary="Most recent stored crops with their scores")
def get_recent_crops(
    request: Request,
    cage_id: str | None = None,
    animal_id: str | None = None,
    limit: int = Query(24, ge=1, le=500),
) -> list[dict[str, Any]]:
    where, params = [], []
    for col, value in (("cage_id", cage_id), ("animal_id", animal_id)):
        if value:
            where.append(f"s.{col} = ?")
            params.append(value)
    sql = (
        "SELECT s.msg_id, s.captured_at, s.cage_id, s.animal_id, s.device_id, s.amgs, s.p_pain, s.label, s.mgs_au, "
        "c.size FROM crops c JOIN scores s ON s.msg_id = c.msg_id "
        f"{'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY s.t DESC LIMIT ?"
    )
    rows = _rows(_conn(request).execute(sql, [*params, limit]))
    for r in rows:
        r["url"] = f"{request.scope.get('root_path', '')}/api/crops/{r['msg_id']}"
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
        t1 = parse_when(end, time.time() + 1)
        t0 = parse_when(start, 0.0)
    except QueryError as e:
        raise _fail(e) from None
    return StreamingResponse(
        export.scores_csv(request.app.state.db.connect().conn, t0, t1, cage_id, animal_id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="scores.csv"'},
    )


# ------------------------------------------------------------------ devices, gaps, quarantine


def _device_row(row: dict[str, Any]) -> dict[str, Any]:
    for key in ("frames_json", "rejected_json", "errors_json", "views_json"):
        text = row.pop(key, None)
        row[key[:-5]] = json.loads(text) if text else None
    for key in ("state_since", "last_seen", "last_score_t", "status_received_at"):
        row[key] = iso(row[key])
    return row


@router.get("/devices", summary="Devices: status, last will, queue depth, model, watermark, gaps")
def get_devices(request: Request) -> list[dict[str, Any]]:
    return [_device_row(r) for r in _rows(_conn(request).execute("SELECT * FROM devices ORDER BY device_id"))]


@router.get("/devices/{device_id}", summary="One device with its recent status history and open gaps")
def get_device(request: Request, device_id: str) -> dict[str, Any]:
    conn = _conn(request)
    rows = _rows(conn.execute("SELECT * FROM devices WHERE device_id = ?", [device_id]))
    if not rows:
        raise HTTPException(404, f"device {device_id!r} has never reported and is not registered")
    out = _device_row(rows[0])
    out["status_history"] = _rows(
        conn.execute(
            "SELECT at, state, reason, queue_depth FROM status_log WHERE device_id = ? ORDER BY t DESC LIMIT 50",
            [device_id],
        )
    )
    out["gaps"] = _rows(
        conn.execute("SELECT * FROM seq_gaps WHERE device_id = ? ORDER BY id DESC LIMIT 100", [device_id])
    )
    out["assignments"] = metadata.list_rows(conn, "assignments", {"device_id": device_id})
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
    row = _conn(request).execute("SELECT site FROM devices WHERE device_id = ?", [device_id]).fetchone()
    if row is None or not row[0]:
        raise HTTPException(404, f"device {device_id!r} has never reported: its site is unknown")
    try:
        command = Command.build(**{**body, "at": utc_now()})
    except ContractError as e:
        raise _fail(f"not a valid command: {e}") from None
    runtime.publish(command_topic(row[0], device_id), command.encode(), qos=1, retain=False)
    return command.wire()


@router.get("/gaps", summary="Sequence gaps (scores lost or late upstream)")
def get_gaps(request: Request, state: str | None = Query(None, pattern="^(open|filled|lost)$")) -> list[dict]:
    sql = "SELECT * FROM seq_gaps" + (" WHERE state = ?" if state else "") + " ORDER BY id DESC LIMIT 1000"
    return _rows(_conn(request).execute(sql, [state] if state else []))


@router.get("/quarantine", summary="Messages refused, with the reason and the first bytes of the payload")
def get_quarantine(request: Request, limit: int = Query(100, ge=1, le=5000)) -> list[dict[str, Any]]:
    rows = _rows(
        _conn(request).execute(
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
        return metadata.save(_conn(request), kind, record, _photoperiod(request).tz)
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
            request.app.state.db.connect().conn, kind, text, f"{kind}.csv", _photoperiod(request).tz
        )
    except metadata.MetadataError as e:
        raise _fail(e) from None
    return {"kind": kind, "imported": n}
