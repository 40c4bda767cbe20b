"""Device status messages (``amgs.status/1``) -> the ``devices`` row, ``status_log`` and reject rollups.

A retained copy seen again after a reconnect is ignored. A last will carries the time it was set (at
connect), older than the statuses since: it still sets the state (offline since it was received), but
reject counters only advance with newer statuses. ``status_log`` keeps every state or reason change
and otherwise one status per device per ``STATUS_LOG_EVERY_S``.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from amgs.contract import Status, parse_time
from amgs.server.storage.db import add_rejects, reject_deltas

STATUS_LOG_EVERY_S = 600.0
"""status_log keeps every state or reason change, and otherwise one status per device per 10 min."""


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def store_status(conn: sqlite3.Connection, device_id: str, site: str, msg: Status, now: float) -> None:
    """Update the device's row from a checked status (the device row exists: the caller ensured it)."""
    t = parse_time(msg.at).timestamp()
    state, status_at, status_t, rejected_json, reason = conn.execute(
        "SELECT state, status_at, status_t, rejected_json, reason FROM devices WHERE device_id = ?",
        [device_id],
    ).fetchone()
    if status_at == msg.at and state == msg.state:
        return  # the retained copy of a status already stored (re-sent after a reconnect)
    newer = status_t is None or t > status_t
    wire = msg.wire()
    rejected, frames, views, errors = (wire.get(k) for k in ("rejected", "frames", "views", "errors"))
    if newer and rejected is not None and rejected_json:
        add_rejects(conn, device_id, t, reject_deltas(json.loads(rejected_json), rejected))
    changed = state != msg.state
    model = msg.model
    # every column a status sets; None where the status leaves it out ...
    columns: dict[str, Any] = {
        "site": site,
        "state": msg.state,
        "reason": msg.reason,
        "status_at": msg.at,
        "status_t": t if status_t is None else max(status_t, t),
        "status_received_at": now,
        "last_seen": now,
        "queue_depth": msg.queue_depth,
        "unconfirmed": msg.unconfirmed,
        "reported_last_seq": msg.last_seq,
        "software": msg.software,
        "inference_ms": msg.inference_ms,
        "disk_free_bytes": msg.disk_free_bytes,
        "cpu_temp_c": msg.cpu_temp_c,
        "clock_synced": None if msg.clock is None else int(msg.clock.synced),
        "errors_json": _json(errors),
        "storage_warning": msg.storage_warning,
    }
    # ... except these, which keep their last known value when a status does not carry them
    kept = {
        "model_name": model and model.name,
        "model_version": model and model.version,
        "model_sha256": model and model.sha256,
        "last_capture_at": msg.last_capture_at,
        "frames_json": _json(frames),
        "views_json": _json(views),
        "rejected_json": _json(rejected) if newer else None,  # a stale last will never rewinds them
    }
    columns.update({k: v for k, v in kept.items() if v is not None})
    if changed:
        columns["state_since"] = t if newer else now
    conn.execute(
        f"UPDATE devices SET {', '.join(f'{c} = ?' for c in columns)} WHERE device_id = ?",
        [*columns.values(), device_id],
    )
    last_logged = conn.execute("SELECT max(t) FROM status_log WHERE device_id = ?", [device_id]).fetchone()[0]
    news = changed or reason != msg.reason
    if not news and last_logged is not None and abs(t - last_logged) < STATUS_LOG_EVERY_S:
        return
    conn.execute(
        "INSERT INTO status_log (device_id, at, t, received_at, state, reason, queue_depth, frames_json, "
        "rejected_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [device_id, msg.at, t, now, msg.state, msg.reason, msg.queue_depth, _json(frames), _json(rejected)],
    )
