"""What the API adds to the read queries: alert state on cage tiles, alerts with their history, the
configured thresholds, and stored device rows decoded for JSON.

A cage tile's state, most urgent first:
  alert           an open or acknowledged alert of severity alert / humane_endpoint on the cage
  device offline  a device watching the cage is offline (or an open device_offline alert)
  elevated        an open warning-level alert, or the last hour crosses a sustained-pain threshold
                  without (yet) the images or time the rule needs
  no data         no scored face for longer than the no-faces rule's ``after_min``
  ok              none of the above
"""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from amgs.server.query.overview import overview
from amgs.server.query.timecourse import iso
from amgs.server.storage.sql import database

from ..alerts.config import SEVERITY_RANK, AlertsConfig
from ..alerts.store import ALERTS, alert_events, list_alerts

STATES = ("alert", "device offline", "elevated", "no data", "ok")


def _open_alerts_by_cage(conn) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for a in database(conn).query(
        "SELECT alert_id, rule, severity, state, opened_at, message, site, cage_id, device_id "
        f"FROM {ALERTS} WHERE state IN ('open', 'acknowledged') ORDER BY opened_at",
    ):
        out.setdefault(a["cage_id"], []).append(a)
    return out


def tile_state(
    tile: dict[str, Any], alerts: list[dict[str, Any]], cfg: AlertsConfig, now: float
) -> tuple[str, str]:
    """(state, why) for one cage tile; see the module docstring."""
    worst = max(alerts, key=lambda a: SEVERITY_RANK[a["severity"]], default=None)
    if (
        worst
        and SEVERITY_RANK[worst["severity"]] >= SEVERITY_RANK["alert"]
        and worst["rule"] != "device_offline"
    ):
        return "alert", worst["message"]
    offline = [d["device_id"] for d in tile.get("devices", []) if d.get("state") == "offline"]
    if offline or any(a["rule"] == "device_offline" for a in alerts):
        who = ", ".join(offline) or next(
            (a["device_id"] for a in alerts if a["rule"] == "device_offline"), ""
        )
        return "device offline", f"device {who} offline"
    if worst is not None:
        return "elevated", worst["message"]
    hour = tile.get("last_hour") or {}
    pain = cfg.pain
    if hour.get("n"):
        if pain.fraction_pain is not None and hour["frac_pain"] >= pain.fraction_pain:
            return "elevated", f"last hour: fraction pain {hour['frac_pain']:.2f} ({hour['n']} images)"
        if pain.mean_amgs is not None and hour["mean_amgs"] >= pain.mean_amgs:
            return "elevated", f"last hour: mean aMGS {hour['mean_amgs']:.2f} ({hour['n']} images)"
    last = tile.get("last_score_t")
    if last is None or now - last > cfg.no_faces.after_min * 60:
        return "no data", "no scored face recently"
    return "ok", ""


def facility_overview(conn, cfg: AlertsConfig, now: float, hours: int = 24) -> dict[str, Any]:
    """Every cage's tile (figures, sparkline, devices, open alerts, state), and the rooms, groups and
    state counts the overview page filters by."""
    tiles = overview(conn, now, hours)
    alerts = _open_alerts_by_cage(conn)
    rooms, groups = set(), set()
    for tile in tiles:
        tile["alerts"] = alerts.get(tile["cage_id"], [])
        tile["state"], tile["state_reason"] = tile_state(tile, tile["alerts"], cfg, now)
        if tile.get("room_id"):
            rooms.add(tile["room_id"])
        groups.update(tile.get("groups") or [])
    return {
        "now": iso(now),
        "hours": hours,
        "cages": tiles,
        "rooms": sorted(rooms),
        "groups": sorted(groups),
        "counts": {s: sum(t["state"] == s for t in tiles) for s in STATES},
    }


def thresholds(cfg: AlertsConfig) -> dict[str, float | None]:
    """The sustained-pain thresholds of the config (drawn on the charts; not validated cut-offs)."""
    return {"fraction_pain": cfg.pain.fraction_pain, "mean_amgs": cfg.pain.mean_amgs}


def alerts_with_history(
    db: sqlite_utils.Database, state: str | None = None, limit: int = 200, cage_id: str | None = None
) -> list[dict[str, Any]]:
    rows = list_alerts(db, state=state, cage_id=cage_id, limit=limit)
    for row in rows:
        row["events"] = alert_events(db, row["alert_id"])
    return rows


_JSON_COLUMNS = ("frames_json", "rejected_json", "errors_json", "views_json")
_TIME_COLUMNS = ("state_since", "last_seen", "last_score_t", "status_received_at")


def _json(text: str | None) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def device_row(row: dict[str, Any]) -> dict[str, Any]:
    """A ``devices`` row for JSON: ``frames``, ``rejected``, ``errors``, ``views`` decoded (None when
    absent), times as RFC 3339."""
    for key in _JSON_COLUMNS:
        if key in row:
            row[key[:-5]] = _json(row.pop(key))
    for key in _TIME_COLUMNS:
        if key in row:
            row[key] = iso(row[key])
    return row
