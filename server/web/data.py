"""What the dashboard shows, assembled from the collector's queries and the alert tables.

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

from amgs.server.query.timecourse import iso, overview

from ..alerts.config import SEVERITY_RANK, AlertsConfig
from ..alerts.store import ALERTS, alert_events, list_alerts

STATES = ("alert", "device offline", "elevated", "no data", "ok")


def _open_alerts_by_cage(conn) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in conn.execute(
        f"SELECT alert_id, rule, severity, state, opened_at, message, site, cage_id, device_id FROM {ALERTS} "
        "WHERE state IN ('open', 'acknowledged') ORDER BY opened_at"
    ):
        cols = (
            "alert_id",
            "rule",
            "severity",
            "state",
            "opened_at",
            "message",
            "site",
            "cage_id",
            "device_id",
        )
        a = dict(zip(cols, row, strict=True))
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


def facility_overview(conn, cfg: AlertsConfig, now: float) -> dict[str, Any]:
    tiles = overview(conn, now)
    alerts = _open_alerts_by_cage(conn)
    last_t = dict(conn.execute("SELECT cage_id, max(t) FROM scores GROUP BY cage_id").fetchall())
    rooms, groups = set(), set()
    for tile in tiles:
        tile["last_score_t"] = last_t.get(tile["cage_id"])
        tile["alerts"] = alerts.get(tile["cage_id"], [])
        tile["state"], tile["state_reason"] = tile_state(tile, tile["alerts"], cfg, now)
        if tile.get("room_id"):
            rooms.add(tile["room_id"])
        groups.update(tile.get("groups") or [])
    counts = {s: sum(t["state"] == s for t in tiles) for s in STATES}
    return {
        "now": iso(now),
        "tiles": tiles,
        "rooms": sorted(rooms),
        "groups": sorted(groups),
        "counts": counts,
    }


def _json(text: str | None, default: Any) -> Any:
    try:
        return json.loads(text) if text else default
    except ValueError:
        return default


def devices(conn) -> list[dict[str, Any]]:
    cols = (
        "device_id",
        "site",
        "state",
        "state_since",
        "reason",
        "last_seen",
        "queue_depth",
        "unconfirmed",
        "last_capture_at",
        "model_name",
        "model_version",
        "software",
        "inference_ms",
        "rejected_json",
        "frames_json",
        "errors_json",
        "views_json",
        "committed_seq",
        "gaps_total",
        "lost_total",
        "scores_total",
        "storage_warning",
        "disk_free_bytes",
        "cpu_temp_c",
    )
    out = []
    for row in conn.execute(f"SELECT {', '.join(cols)} FROM devices ORDER BY device_id"):
        d = dict(zip(cols, row, strict=True))
        d["state_since"] = iso(d["state_since"])
        d["last_seen"] = iso(d["last_seen"])
        d["rejected"] = _json(d.pop("rejected_json"), {})
        d["frames"] = _json(d.pop("frames_json"), {})
        d["errors"] = _json(d.pop("errors_json"), [])
        d["views"] = _json(d.pop("views_json"), [])
        out.append(d)
    return out


def recent_crops(conn, cage_id: str, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT c.msg_id, s.captured_at, s.amgs, s.p_pain, s.label, s.needs_review, s.mgs_au, s.animal_id "
        "FROM crops c JOIN scores s ON s.msg_id = c.msg_id WHERE s.cage_id = ? ORDER BY s.t DESC LIMIT ?",
        [cage_id, limit],
    ).fetchall()
    cols = ("msg_id", "captured_at", "amgs", "p_pain", "label", "needs_review", "mgs_au", "animal_id")
    return [dict(zip(cols, r, strict=True)) | {"url": f"crops/{r[0]}.jpg"} for r in rows]


def alerts_with_history(db, state: str | None, limit: int = 200) -> list[dict[str, Any]]:
    rows = list_alerts(db, state=state, limit=limit)
    for row in rows:
        row["events"] = alert_events(db, row["alert_id"])
    return rows
