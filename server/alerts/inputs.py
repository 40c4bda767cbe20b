"""Snapshots for the alert rules, read from the collector's tables (see ``amgs.server.storage.db``).

Pain windows use the raw ``scores`` rows (exact windows; raw scores are kept far longer than any
window), scorable records only (an unscorable one is counted apart, for the no-usable-faces rule), baselines use the collector's own baseline definition (``timecourse.baseline``) so the alert
and the dashboard agree on what "the animal's baseline" is.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from amgs.contract import UNSCORABLE_REASONS
from amgs.server.query.timecourse import Source, baseline, first_event
from amgs.server.storage.schema import SCORABLE, UNSCORABLE
from amgs.server.storage.sql import database

from .config import AlertsConfig
from .rules import CageSnapshot, DeviceSnapshot, WindowStats


def _dt(t: float | None) -> datetime | None:
    return None if t is None else datetime.fromtimestamp(t, UTC)


def window_stats(conn, cage: CageSnapshot, since: datetime, until: datetime) -> WindowStats:
    """The cage's records in [since, until]: count, mean aMGS, fraction pain and the synthetic flag over
    the scorable ones; the unscorable ones counted apart, by reason (their raw scores are never used)."""
    only = f"CASE WHEN {SCORABLE} THEN"
    reasons = ", ".join(
        f"count(CASE WHEN {UNSCORABLE} AND unscorable_reason = '{r}' THEN 1 END)" for r in UNSCORABLE_REASONS
    )
    n, mean, frac, synthetic, n_unscorable, unscorable_synthetic, *by_reason = conn.execute(
        f"SELECT count({only} 1 END), avg({only} amgs END), avg({only} is_pain END), "
        f"max({only} model_synthetic END), count(CASE WHEN {UNSCORABLE} THEN 1 END), "
        f"max(CASE WHEN {UNSCORABLE} THEN model_synthetic END), {reasons} FROM scores "
        "WHERE cage_id = ? AND t >= ? AND t <= ?",
        [cage.cage_id, since.timestamp(), until.timestamp()],
    ).fetchone()
    return WindowStats(
        int(n),
        None if mean is None else float(mean),
        None if frac is None else float(frac),  # PostgreSQL's avg of an integer column is a Decimal
        bool(synthetic),
        int(n_unscorable),
        tuple((r, int(k)) for r, k in zip(UNSCORABLE_REASONS, by_reason, strict=True) if k),
        bool(unscorable_synthetic),
    )


def _views(text: str | None) -> list[dict]:
    try:
        views = json.loads(text) if text else []
        return [v for v in views if isinstance(v, dict)]
    except ValueError:
        return []


def device_snapshots(conn, cfg: AlertsConfig, now: datetime) -> list[DeviceSnapshot]:
    """Every known device; one silent for longer than the offline rule counts as offline since last seen."""
    assigned: dict[str, set[str]] = {}
    for device_id, cage_id in conn.execute(
        "SELECT device_id, cage_id FROM device_assignments WHERE end_t IS NULL OR end_t > ?",
        [now.timestamp()],
    ):
        assigned.setdefault(device_id, set()).add(cage_id)
    out = []
    for row in database(conn).query(
        "SELECT device_id, site, state, state_since, last_seen, errors_json, views_json FROM devices"
    ):
        device_id, state, last_seen = row["device_id"], row["state"], row["last_seen"]
        if state == "revoked":
            continue  # taken off the broker on purpose (amgs provision revoke): nothing to alert about
        cages = set(assigned.get(device_id, ()))
        errors: list[str] = []
        for view in _views(row["views_json"]):
            if view.get("cage_id"):
                cages.add(view["cage_id"])
            if view.get("error"):
                errors.append(f"view {view.get('view')}: {view['error']}")
        try:
            errors = [str(e) for e in json.loads(row["errors_json"] or "[]")] + errors
        except ValueError:
            pass
        since = _dt(row["state_since"])
        silent_for = (now.timestamp() - last_seen) / 60 if last_seen else None
        if state != "offline" and silent_for is not None and silent_for >= cfg.device_offline.after_min:
            state, since = "offline", _dt(last_seen)
        out.append(
            DeviceSnapshot(
                row["site"] or "unknown",
                device_id,
                state or "unknown",
                since,
                tuple(sorted(cages)),
                tuple(errors),
            )
        )
    return out


def cage_snapshots(
    conn, cfg: AlertsConfig, devices: list[DeviceSnapshot], now: datetime
) -> list[CageSnapshot]:
    """Every registered cage and every cage that delivered scores in the last week."""
    since = now.timestamp() - 7 * 86400
    info: dict[str, dict] = {}
    for cage_id, site in conn.execute("SELECT cage_id, site_id FROM cages"):
        info[cage_id] = {"site": site}
    for cage_id, site, last in conn.execute(  # last: the last scorable face (no_faces)
        f"SELECT cage_id, max(site), max(CASE WHEN {SCORABLE} THEN t END) FROM scores WHERE t >= ? "
        "GROUP BY cage_id",
        [since],
    ):
        info.setdefault(cage_id, {})
        info[cage_id]["site"] = info[cage_id].get("site") or site
        info[cage_id]["last"] = last
    watcher = {cage: d for d in devices for cage in d.cages}
    animals: dict[str, list[str]] = {}
    for animal_id, cage_id in conn.execute(
        "SELECT animal_id, cage_id FROM animals WHERE cage_id IS NOT NULL"
    ):
        animals.setdefault(cage_id, []).append(animal_id)
    out = []
    for cage_id, facts in sorted(info.items()):
        last = facts.get("last")
        if last is None:
            row = conn.execute(
                f"SELECT max(t) FROM scores WHERE cage_id = ? AND {SCORABLE}", [cage_id]
            ).fetchone()
            last = row[0] if row else None
        device = watcher.get(cage_id)
        site = facts.get("site") or (device.site if device else None)
        if site is None:
            continue  # registered, never scored, not watched: nothing a rule could say about it
        in_cage = animals.get(cage_id, [])
        base_mean, base_n = None, 0
        event = first_event(conn, "surgery", cage_id=cage_id)
        if event is not None and cfg.baseline_rise.enabled:
            b = baseline(conn, Source(cage_id=cage_id), event["t"], cfg.baseline_rise.baseline_hours)
            base_mean, base_n = b["mean_amgs"], b["n"]
        out.append(
            CageSnapshot(
                site=site,
                cage_id=cage_id,
                animal_id=in_cage[0] if len(in_cage) == 1 else None,
                device_id=device.device_id if device else None,
                last_score_at=_dt(last),
                baseline_mean=base_mean,
                baseline_n=base_n,
            )
        )
    return out
