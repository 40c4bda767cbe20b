"""Rated crops as a training set, in the lab formats ``amgs model train`` reads (``amgs/datasets.py``).

``amgs server export-ratings DIR`` (and the dashboard's download) writes::

    DIR/README.txt        what this is, when, the human pain cut-off, the counts
    DIR/pain/r000123.jpg, DIR/no pain/r000124.jpg
                          every item with a human consensus, filed by it (mean human MGS >= the site's
                          ``rating.human_pain_cutoff``); the image is the pool's copy of the crop
    DIR/au_scores.csv     file,ot1,nb1,cb1,ep1,wc1,ot2,...: the first showing of each rater, one rater
                          number per person (raters.csv), blank where a rater did not score the item, said
                          "not visible" or "not scorable"
    DIR/animals.csv       filename,animal_id,time_point,condition + cage, device, group, capture time, the
                          model (name, version, trained on synthetic faces or not) that produced the crop
                          with its P(pain) and AU-MGS, the
                          human MGS and rater count; ``animal_id`` is ``cage:<id>`` for a cage whose
                          scores carry no animal, so ``amgs model train`` splits by animal (or whole cage)
    DIR/raters.csv        rater_number,rater,n_ratings
    DIR/ratings.csv       every rating, tidy: file,item_id,rater,occasion,rated_at,not_scorable,ot..wc,mgs
    DIR/excluded.csv      rated items left out of the folders, and why (not scorable by consensus, no copy)

An item whose consensus lacks a unit (every rater said "not visible") keeps its folder label but has no
``au_scores.csv`` row, because the loader requires all five units from at least one rater.
"""

from __future__ import annotations

import csv
import datetime as dt
import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from amgs.contract import AU_KEYS

from .agreement import Rating, consensus, human_pain


@dataclass
class ExportItem:
    item_id: int
    image: Path | None  # the pool's copy of the crop (None: gone)
    t: float
    cage_id: str
    animal_id: str | None = None
    device_id: str = ""
    group_id: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    model_synthetic: bool | None = None
    p_pain: float | None = None
    mgs_au: float | None = None
    stratum: str = ""


class ExportError(ValueError):
    """The export cannot be written where asked; the message says why."""


def file_name(item_id: int) -> str:
    return f"r{item_id:06d}.jpg"


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _fmt(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def write_export(
    dest: Path,
    items: Sequence[ExportItem],
    ratings: Sequence[Rating],
    cutoff: float,
    *,
    timezone: str = "UTC",
    now: float | None = None,
) -> dict:
    """Write the training set into ``dest`` (new or empty folder); return the counts."""
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ExportError(f"{dest}: exists and is not an empty folder; choose a new one")
    tz = ZoneInfo(timezone)
    rated_ids = {r.item_id for r in ratings}
    items = sorted((it for it in items if it.item_id in rated_ids), key=lambda it: it.item_id)
    ids = {it.item_id for it in items}
    ratings = [r for r in ratings if r.item_id in ids]
    cons = consensus(ratings)
    raters = sorted({r.rater for r in ratings})
    number = {r: i + 1 for i, r in enumerate(raters)}
    first: dict[int, dict[str, Rating]] = defaultdict(dict)
    for r in sorted(ratings, key=lambda r: (r.occasion, r.rated_at)):
        first[r.item_id].setdefault(r.rater, r)

    (dest / "pain").mkdir(parents=True, exist_ok=True)
    (dest / "no pain").mkdir(exist_ok=True)
    au_rows, animal_rows, excluded, rel_of = [], [], [], {}
    counts = {"pain": 0, "no pain": 0, "excluded": 0, "au_rows": 0}
    for it in items:
        c = cons[it.item_id]
        if c.unscorable or c.mgs is None:
            excluded.append([it.item_id, "not scorable by the raters' consensus", c.n_raters, c.n_unscorable])
            continue
        if it.image is None or not Path(it.image).exists():
            excluded.append(
                [it.item_id, "the pool's copy of the crop is missing", c.n_raters, c.n_unscorable]
            )
            continue
        folder = "pain" if human_pain(c.mgs, cutoff) else "no pain"
        rel = f"{folder}/{file_name(it.item_id)}"
        shutil.copyfile(it.image, dest / rel)
        rel_of[it.item_id] = rel
        counts[folder] += 1
        row: list[str] = [rel]
        seen_unit = dict.fromkeys(AU_KEYS, False)
        for rater in raters:
            r = first[it.item_id].get(rater)
            for k in AU_KEYS:
                v = None if r is None or r.unscorable else r.au.get(k)
                seen_unit[k] |= v is not None
                row.append(_fmt(v))
        if all(seen_unit.values()):
            au_rows.append(row)
        local = dt.datetime.fromtimestamp(it.t, tz).isoformat(timespec="seconds")
        animal_rows.append(
            [
                rel,
                it.animal_id or f"cage:{it.cage_id}",
                local,
                it.group_id or "",
                it.cage_id,
                it.device_id,
                _fmt(it.model_name),
                _fmt(it.model_version),
                "" if it.model_synthetic is None else int(bool(it.model_synthetic)),
                _fmt(it.p_pain),
                _fmt(it.mgs_au),
                f"{c.mgs:.4f}",
                c.n_raters,
                it.stratum,
                it.item_id,
            ]
        )
    counts["excluded"] = len(excluded)
    counts["au_rows"] = len(au_rows)
    header = ["file"] + [f"{k}{number[r]}" for r in raters for k in AU_KEYS]
    _write_csv(dest / "au_scores.csv", header, au_rows)
    _write_csv(
        dest / "animals.csv",
        [
            "filename",
            "animal_id",
            "time_point",
            "condition",
            "cage_id",
            "device_id",
            "model_name",
            "model_version",
            "model_synthetic",
            "model_p_pain",
            "model_mgs_au",
            "human_mgs",
            "n_raters",
            "stratum",
            "item_id",
        ],
        animal_rows,
    )
    per_rater = defaultdict(int)
    for r in ratings:
        per_rater[r.rater] += 1
    _write_csv(
        dest / "raters.csv",
        ["rater_number", "rater", "n_ratings"],
        [[number[r], r, per_rater[r]] for r in raters],
    )
    _write_csv(
        dest / "ratings.csv",
        ["file", "item_id", "rater", "occasion", "rated_at", "not_scorable", *AU_KEYS, "mgs"],
        [
            [
                rel_of.get(r.item_id, ""),
                r.item_id,
                r.rater,
                r.occasion,
                dt.datetime.fromtimestamp(r.rated_at, dt.UTC).isoformat(timespec="seconds"),
                int(r.unscorable),
                *(_fmt(None if r.unscorable else r.au.get(k)) for k in AU_KEYS),
                _fmt(None if r.mgs is None else round(r.mgs, 4)),
            ]
            for r in sorted(ratings, key=lambda r: (r.item_id, r.rater, r.occasion))
        ],
    )
    _write_csv(dest / "excluded.csv", ["item_id", "reason", "n_raters", "n_not_scorable"], excluded)
    when = dt.datetime.fromtimestamp(now if now is not None else dt.datetime.now(dt.UTC).timestamp(), dt.UTC)
    (dest / "README.txt").write_text(
        f"aMGS rated face crops, exported {when.isoformat(timespec='seconds')}\n\n"
        f"Folders pain/ and no pain/ by the human consensus: mean human MGS >= {cutoff:g} is pain\n"
        "(rating.human_pain_cutoff, a site setting; no validated mouse MGS cut-off exists).\n"
        f"{counts['pain']} pain, {counts['no pain']} no pain, {counts['excluded']} excluded (excluded.csv), "
        f"{len(ratings)} ratings by {len(raters)} raters (raters.csv, ratings.csv).\n"
        "au_scores.csv: per-rater action units, first showing only; animals.csv: animal (or cage:<id>),\n"
        "capture time, group, cage, device, and the model version that produced each crop.\n"
        "Train with: amgs model train DIR -o runs/lab  (the split keeps each animal on one side).\n"
    )
    return {**counts, "ratings": len(ratings), "raters": len(raters), "dest": str(dest)}
