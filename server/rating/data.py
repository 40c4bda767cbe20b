"""Read the rating tables into the plain records agreement.py and export.py work on, and compute what
the page, the API, the CSV export and the alert show."""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from pathlib import Path

from amgs.contract import AU_KEYS

from .agreement import (
    GROUPINGS,
    RatedItem,
    Rating,
    agreement,
    agreement_by,
    consensus,
    model_vs_human,
    tidy_rows,
)
from .export import ExportItem

_AU = ", ".join(f"au_{k}" for k in AU_KEYS)


def load(
    conn: sqlite3.Connection,
    *,
    start: float | None = None,
    end: float | None = None,
    rated_since: float | None = None,
    model: str | None = None,
) -> tuple[list[RatedItem], list[Rating]]:
    """Rated items (capture time in [start, end), model "name version") and all their ratings;
    ``rated_since`` keeps only ratings made since then (the alert's rolling window)."""
    where, args = ["EXISTS (SELECT 1 FROM ratings r WHERE r.item_id = i.item_id)"], []
    if start is not None:
        where.append("i.t >= ?")
        args.append(start)
    if end is not None:
        where.append("i.t < ?")
        args.append(end)
    if model:
        where.append("(coalesce(i.model_name, '') || ' ' || coalesce(i.model_version, '')) = ?")
        args.append(model)
    items = [
        RatedItem(
            item_id=r[0],
            t=r[1],
            model=f"{r[2] or ''} {r[3] or ''}".strip(),
            device_id=r[4] or "",
            cage_id=r[5] or "",
            group_id=r[6] or "",
            p_pain=r[7],
            is_pain=None if r[8] is None else bool(r[8]),
            mgs_au=r[9],
            site=r[10] or "",
            model_sha256=r[11] or "",
        )
        for r in conn.execute(
            "SELECT item_id, t, model_name, model_version, device_id, cage_id, group_id, p_pain, is_pain, "
            f"mgs_au, site, model_sha256 FROM rating_items i WHERE {' AND '.join(where)} ORDER BY item_id",
            args,
        )
    ]
    ids = {it.item_id for it in items}
    rwhere, rargs = "", []
    if rated_since is not None:
        rwhere, rargs = " WHERE rated_at >= ?", [rated_since]
    ratings = [
        Rating(
            item_id=r[0],
            rater=r[1],
            occasion=r[2],
            au=dict(zip(AU_KEYS, r[5:], strict=True)),
            unscorable=bool(r[3]),
            rated_at=r[4],
        )
        for r in conn.execute(
            f"SELECT item_id, rater, occasion, unscorable, rated_at, {_AU} FROM ratings{rwhere}", rargs
        )
        if r[0] in ids
    ]
    if rated_since is not None:
        keep = {r.item_id for r in ratings}
        items = [it for it in items if it.item_id in keep]
    return items, ratings


_CACHE: dict[tuple, dict] = {}
_CACHE_MAX = 32


def ratings_version(conn: sqlite3.Connection) -> tuple:
    """Which database, and a stamp that changes whenever a rating is added or changed (the figures depend
    on nothing else that moves)."""
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    return (path,) + tuple(
        conn.execute(
            "SELECT count(*), coalesce(max(rating_id), 0), coalesce(max(changed_at), 0) FROM ratings"
        ).fetchone()
    )


def summary(conn: sqlite3.Connection, config, by: str = "all", **filters) -> dict:
    """What the agreement page and ``GET /api/rating/agreement`` show: one result per group of ``by``.
    Computed once per state of the ratings table (and query): a page view after the first is instant."""
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {', '.join(GROUPINGS)}")
    cutoff = config.rating.human_pain_cutoff
    tz = config.photoperiod.timezone
    key = (by, tuple(sorted(filters.items())), cutoff, tz, ratings_version(conn))
    groups = _CACHE.get(key)
    if groups is None:
        items, ratings = load(conn, **filters)
        groups = agreement_by(items, ratings, by, cutoff, timezone=tz)
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = groups
    return {"by": by, "human_pain_cutoff": cutoff, "conf": 0.95, "groups": groups, "pool": pool_counts(conn)}


def tidy(result: dict) -> list[dict]:
    return [row for g in result["groups"] for row in tidy_rows(g)]


def pool_counts(conn: sqlite3.Connection) -> dict:
    states = dict(conn.execute("SELECT state, count(*) FROM rating_items GROUP BY state").fetchall())
    n_ratings, n_raters = conn.execute("SELECT count(*), count(DISTINCT rater) FROM ratings").fetchone()
    return {
        "open": states.get("open", 0),
        "done": states.get("done", 0),
        "expired": states.get("expired", 0),
        "ratings": n_ratings,
        "raters": n_raters,
    }


def rolling(conn: sqlite3.Connection, rating_cfg, now: float | None = None) -> list[dict]:
    """Model-vs-human agreement per site and model over the ratings of the last ``rating.alert.window_days``
    (what the agreement alert judges): ``[{"site", "model", "model_vs_human"}]``."""
    now = time.time() if now is None else now
    since = now - rating_cfg.alert.window_days * 86400
    key = ("rolling", int(since // 600), rating_cfg.alert.window_days, rating_cfg.human_pain_cutoff)
    key += (ratings_version(conn),)
    if key in _CACHE:  # the alert job asks every minute; the answer moves with the ratings (or 10 min)
        return _CACHE[key]
    items, ratings = load(conn, rated_since=since)
    cons = consensus(ratings)
    groups: dict[tuple[str, str], list[RatedItem]] = defaultdict(list)
    for it in items:
        groups[(it.site, it.model)].append(it)
    out = [
        {
            "site": site,
            "model": model,
            "model_vs_human": model_vs_human(groups[(site, model)], cons, rating_cfg.human_pain_cutoff, 0.95),
        }
        for site, model in sorted(groups)
    ]
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = out
    return out


def pool_sites(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT site FROM rating_items WHERE site IS NOT NULL")]


def _source(state_dir: Path, rel: str | None, backups_dir: Path | None) -> Path | None:
    if not rel:
        return None
    path = state_dir / rel
    if (
        not path.exists()
        and backups_dir is not None
        and (Path(backups_dir) / "rating" / Path(rel).name).exists()
    ):
        return Path(backups_dir) / "rating" / Path(rel).name
    return path


def export_records(
    conn: sqlite3.Connection, state_dir: Path, backups_dir: Path | None = None
) -> tuple[list[ExportItem], list[Rating]]:
    """Every rated item with the path of its source copy (the pool's, else the backup's), and every rating."""
    _, ratings = load(conn)
    rows = conn.execute(
        "SELECT item_id, source, t, cage_id, animal_id, device_id, group_id, model_name, model_version, "
        "p_pain, mgs_au, stratum, model_synthetic FROM rating_items i WHERE EXISTS "
        "(SELECT 1 FROM ratings r WHERE r.item_id = i.item_id) ORDER BY item_id"
    ).fetchall()
    items = [
        ExportItem(
            item_id=r[0],
            image=_source(Path(state_dir), r[1], backups_dir),
            t=r[2],
            cage_id=r[3],
            animal_id=r[4],
            device_id=r[5],
            group_id=r[6],
            model_name=r[7],
            model_version=r[8],
            p_pain=r[9],
            mgs_au=r[10],
            stratum=r[11],
            model_synthetic=None if r[12] is None else bool(r[12]),
        )
        for r in rows
    ]
    return items, ratings


def agreement_all(conn: sqlite3.Connection, config) -> dict:
    items, ratings = load(conn)
    return agreement(items, ratings, config.rating.human_pain_cutoff)
