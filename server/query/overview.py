"""The facility overview: every cage's current figures, an hourly sparkline, its groups and devices.

Read from the 1-h rollups (one query for every cage) plus each cage's last score time; alert state is
added by the HTTP layer (:mod:`amgs.server.http.views`), which owns the alert tables' view.
"""

from __future__ import annotations

from typing import Any

from amgs.server.storage.db import ROLLUP_SUMS
from amgs.server.storage.sql import database

from .timecourse import add_sums, iso, stats


def overview(conn, now: float, hours: int = 24) -> list[dict[str, Any]]:
    """Every cage: last score, last-hour and last-``hours`` figures, an hourly sparkline, devices."""
    t_end = int(now // 3600 + 1) * 3600
    t_start = t_end - hours * 3600
    cages = {r["cage_id"]: r for r in database(conn).query("SELECT cage_id, room_id, name FROM cages")}
    spark: dict[str, dict[int, dict]] = {}
    sums = ", ".join(f"total({c}) AS {c}" for c in ROLLUP_SUMS)
    for row in database(conn).query(
        f"SELECT cage_id, bucket, {sums} FROM rollup_1h WHERE bucket >= ? AND bucket < ? GROUP BY cage_id, bucket",
        [t_start, t_end],
    ):
        spark.setdefault(row.pop("cage_id"), {})[row.pop("bucket")] = row
    for cage_id in spark:
        cages.setdefault(cage_id, {"cage_id": cage_id, "room_id": None, "name": None})
    groups = {}
    for cage_id, group_id in conn.execute("SELECT cage_id, group_id FROM animals WHERE cage_id IS NOT NULL"):
        groups.setdefault(cage_id, set()).add(group_id)
    assigned = {}
    for cage_id, device_id in conn.execute(
        "SELECT cage_id, device_id FROM device_assignments WHERE end_t IS NULL OR end_t > ?", [now]
    ):
        assigned.setdefault(cage_id, set()).add(device_id)
    devices = {
        r["device_id"]: r | {"state_since": iso(r["state_since"]), "last_seen": iso(r["last_seen"])}
        for r in database(conn).query("SELECT device_id, state, state_since, last_seen FROM devices")
    }
    out = []
    for cage_id in sorted(cages):
        tile = dict(cages[cage_id])
        last = conn.execute("SELECT max(t) FROM scores WHERE cage_id = ?", [cage_id]).fetchone()[0]
        buckets = spark.get(cage_id, {})
        total = None
        for s in buckets.values():
            total = add_sums(total, s)
        tile["last_score_t"] = last
        tile["last_score_at"] = iso(last)
        tile["groups"] = sorted(g for g in groups.get(cage_id, ()) if g)
        tile["window_h"] = hours
        tile["window"] = stats(total)
        tile["last_hour"] = stats(buckets.get(t_end - 3600))
        tile["sparkline"] = [
            {
                "start": iso(b),
                **{k: v for k, v in stats(buckets.get(b)).items() if k in ("n", "mean_amgs", "frac_pain")},
            }
            for b in range(t_start, t_end, 3600)
        ]
        tile["devices"] = [
            devices.get(d, {"device_id": d, "state": None}) for d in sorted(assigned.get(cage_id, ()))
        ]
        out.append(tile)
    return out


SYNTHETIC_LOOKBACK_S = 90 * 86400
"""How far back a synthetic-trained model's scores keep the dashboard's SYNTHETIC MODEL banner up."""


def synthetic_models(conn, now: float) -> list[str]:
    """``name version`` of every synthetic-trained model whose scores are in the database's recent past.

    Every page shows them in a banner: such scores say nothing about real mice (docs/models.md)."""
    rows = conn.execute(
        "SELECT DISTINCT model_name, model_version FROM scores WHERE model_synthetic = 1 AND t >= ? "
        "ORDER BY model_name, model_version",
        [now - SYNTHETIC_LOOKBACK_S],
    ).fetchall()
    return [f"{name} {version}" for name, version in rows]
