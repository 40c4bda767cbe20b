"""CSV exports in tidy long format: one observation per row, readable as-is by R, Prism and pandas.

- :func:`scores_csv`: one row per scored image.
- :func:`timecourse_csv` (:func:`groups_csv` for several groups): one row per (series, bin, metric), with
  the bin's n and SEM where defined.
- :func:`group_table_csv`: one row per (group, bin), mean and SEM of each measure in columns.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from amgs.contract import AU_KEYS
from amgs.server.storage.sql import where

from .timecourse import iso

SCORE_EXPORT_COLUMNS = (
    "captured_at",
    "site",
    "device_id",
    "cage_id",
    "animal_id",
    "group_id",
    "view",
    "seq",
    "msg_id",
    "amgs",
    "p_pain",
    "label",
    "confidence",
    "needs_review",
    *(f"au_{k}" for k in AU_KEYS),
    "mgs_au",
    "motion",
    "asleep",
    "clock_synced",
    "model_name",
    "model_version",
    "model_synthetic",
    "outcome",
    "unscorable_reason",
    "domain_distance",
    "det_score",
)
"""``model_synthetic`` 1: the score came from a model trained on synthetic faces only (empty: a device older
than the flag). ``outcome`` empty: a device older than the field (the label stands); ``unscorable``: the image's
amgs/p_pain/label are the model's raw output, kept for the record and in no mean or fraction."""

TIMECOURSE_COLUMNS = (
    "series",
    "series_id",
    "group_id",
    "bin_start",
    "hours_since_event",
    "phase",
    "n_images",
    "n_animals",
    "metric",
    "value",
    "sem",
)


def _rows_to_csv(header: tuple[str, ...], rows) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    yield buf.getvalue()
    for row in rows:
        buf.seek(0)
        buf.truncate()
        writer.writerow(["" if v is None else v for v in row])
        yield buf.getvalue()


def scores_csv(
    conn, start: float, end: float, cage_id: str | None = None, animal_id: str | None = None
) -> Iterator[str]:
    """Raw scores in [start, end) (within raw retention), oldest first, streamed."""
    clause, params = where(
        {"s.cage_id": cage_id or None, "s.animal_id": animal_id or None},
        ("s.t >= ?", [start]),
        ("s.t < ?", [end]),
    )
    cols = ", ".join("a.group_id" if c == "group_id" else f"s.{c}" for c in SCORE_EXPORT_COLUMNS)
    sql = (
        f"SELECT {cols} FROM scores s LEFT JOIN animals a ON a.animal_id = s.animal_id {clause} ORDER BY s.t"
    )
    return _rows_to_csv(SCORE_EXPORT_COLUMNS, conn.execute(sql, params))


_METRICS = ("mean_amgs", "frac_pain", "delta_amgs", "mgs_au", "activity", "frac_asleep")


def _series_rows(kind: str, series_id: str, group_id: str | None, result: dict[str, Any]) -> Iterator[tuple]:
    for b in result["bins"]:
        if not b.get("n") and not b.get("n_unscorable"):
            continue
        common = (kind, series_id, group_id, b["start"], b.get("hours"), b.get("phase"), b["n"], None)
        for metric in _METRICS:
            if b.get(metric) is not None:
                yield (*common, metric, b[metric], b["sem_amgs"] if metric == "mean_amgs" else None)
        for k, v in (b.get("au") or {}).items():
            yield (*common, f"au_{k}", v, None)
        for reason, count in b.get("rejected", {}).items():
            yield (*common, f"rejected_{reason}", count, None)
        if b.get("n_unscorable"):
            yield (*common, "n_unscorable", b["n_unscorable"], None)
            for reason, count in b["unscorable"].items():
                if count:
                    yield (*common, f"unscorable_{reason}", count, None)


def _timecourse_rows(result: dict[str, Any]) -> Iterator[tuple]:
    """The rows of one cage, animal or group time course (the dict the timecourse module returns)."""
    if "group" in result:
        gid = result["group"]["group_id"]
        for b in result["bins"]:
            start = b.get("start") or (iso(b["start_t"]) if "start_t" in b else None)
            base = ("group", gid, gid, start, b.get("hours"), None, b["n_images"], b["n_animals"])
            for metric, sem in (
                ("mean_amgs", "sem_amgs"),
                ("frac_pain", "sem_frac_pain"),
                ("delta_amgs", "sem_delta_amgs"),
            ):
                if b.get(metric) is not None:
                    yield (*base, metric, b[metric], b.get(sem))
        for animal_id, s in result.get("per_animal", {}).items():
            yield from _series_rows("animal", animal_id, gid, s)
    elif "animal" in result:
        a = result["animal"]
        yield from _series_rows("animal", a["animal_id"], a.get("group_id"), result)
    else:
        yield from _series_rows("cage", result["cage_id"], None, result)


def timecourse_csv(result: dict[str, Any]) -> Iterator[str]:
    """A cage, animal or group time course (the dict the timecourse module returns) as tidy CSV."""
    return _rows_to_csv(TIMECOURSE_COLUMNS, _timecourse_rows(result))


def groups_csv(curves: dict[str, dict[str, Any]]) -> Iterator[str]:
    """Several group time courses in one tidy CSV (the same columns as :func:`timecourse_csv`)."""
    return _rows_to_csv(TIMECOURSE_COLUMNS, (row for c in curves.values() for row in _timecourse_rows(c)))


GROUP_TABLE_COLUMNS = (
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


def group_table_csv(curves: dict[str, dict[str, Any]]) -> Iterator[str]:
    """Group curves with one row per group and bin, the mean and SEM of each measure in columns
    (what a grouped-table import, e.g. Prism's, reads directly; the dashboard's group download)."""
    return _rows_to_csv(
        GROUP_TABLE_COLUMNS,
        (
            (g, b.get("hours"), *(b.get(k) for k in GROUP_TABLE_COLUMNS[2:]))
            for g, c in curves.items()
            for b in c["bins"]
        ),
    )
