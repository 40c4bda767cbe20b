"""MGS time courses per cage, animal and group, read from the rollup tables.

Bins run from 5 min to 1 day (any multiple of 5 min). A bin holds the 5-min (or 1-h) rollup buckets
whose *midpoint* falls in it, so wall-clock bins are exact and bins aligned to an event time that is
not on a 5-min boundary are off by at most 2.5 min (documented in docs/server.md).

Per bin: images scored (``n``), images the device found unscorable (``n_unscorable``, by reason in
``unscorable``: out of the model's domain, no face, quality; they are in no other figure), mean aMGS with SD and SEM over images, fraction classified pain,
AU means and the AU-based MGS when the model has AU heads, activity (mean frame motion), fraction
asleep, scores needing review, scores from unsynchronized clocks, images rejected by reason (from the
devices' status counters), and the light/dark phase from the configured photoperiod.

Alignment: ``wall`` (bins from local midnight of the start day) or ``event`` (hours since the animal's,
or the cage's, first event of a kind, e.g. ``surgery``). With a baseline window each value also gets a
``delta_amgs`` relative to that animal's own pre-event mean. Group curves are the mean +/- SEM over
animals of each animal's per-bin mean (or delta), the form of the paper's laparotomy/sham/analgesic figure.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import math
import time
from dataclasses import dataclass
from typing import Any

from amgs.contract import AU_KEYS, format_time
from amgs.server.storage.db import REJECT_TABLES, ROLLUP_SUMS, ROLLUP_TABLES
from amgs.server.storage.schema import UNSCORABLE_SUMS
from amgs.server.storage.sql import database, where

from .params import MAX_TIME, MIN_BIN_S, MIN_TIME, QueryError


def iso(t: float | None) -> str | None:
    """The contract's time format (whole seconds, the common case of bin edges, take a faster path)."""
    if t is None:
        return None
    if t == int(t):
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(int(t)))
    return format_time(dt.datetime.fromtimestamp(t, dt.UTC))


EVENT_COLUMNS = "id, kind, t, at, animal_id, cage_id, value, unit, notes"
MAX_BINS = 20000
BASELINE_EVENT = "surgery"
"""Wall-clock series with a baseline window report the mean over that window before this event (no delta)."""


# --------------------------------------------------------------------------- photoperiod


def _edges(t0: float, t1: float, photoperiod) -> list[tuple[float, bool]]:
    """Lights-on/off switch times (Unix s, light after the switch) from a day before t0 to a day after t1."""
    tz = photoperiod.tz
    day = dt.datetime.fromtimestamp(t0, tz).date() - dt.timedelta(days=1)
    last = dt.datetime.fromtimestamp(t1, tz).date() + dt.timedelta(days=1)
    edges = []
    while day <= last:
        for clock, light in ((photoperiod.lights_on, True), (photoperiod.lights_off, False)):
            edges.append((dt.datetime.combine(day, clock, tzinfo=tz).timestamp(), light))
        day += dt.timedelta(days=1)
    edges.sort()
    return edges


class PhaseLookup:
    """``light``/``dark``/``mixed`` of intervals inside [t0, t1), from the switch times computed once."""

    def __init__(self, t0: float, t1: float, photoperiod) -> None:
        self.edges = _edges(t0, t1, photoperiod)
        self.times = [t for t, _ in self.edges]

    def __call__(self, a: float, b: float) -> str:
        i = bisect.bisect_right(self.times, a) - 1
        light = self.edges[i][1]
        if bisect.bisect_left(self.times, b) - 1 > i:  # a switch inside (a, b)
            return "mixed"
        return "light" if light else "dark"


def phase(t0: float, t1: float, photoperiod) -> str:
    """``light``, ``dark`` or ``mixed`` for the interval [t0, t1)."""
    if photoperiod is None:
        return "unknown"
    return PhaseLookup(t0, t1, photoperiod)(t0, t1)


def dark_periods(t0: float, t1: float, photoperiod) -> list:
    """Dark intervals ``[start, end]`` (Unix s) overlapping [t0, t1); for shading charts."""
    out, dark_start = [], None
    for t, light in _edges(t0, t1, photoperiod):
        if not light and dark_start is None:
            dark_start = t
        elif light and dark_start is not None:
            if t > t0 and dark_start < t1:
                out.append([max(dark_start, t0), min(t, t1)])
            dark_start = None
    return out


# --------------------------------------------------------------------------- bins from rollups


@dataclass(frozen=True)
class Source:
    """Which rollup rows belong to a series: a cage (all its animals) or an animal."""

    cage_id: str | None = None
    animal_id: str | None = None
    include_cage_untagged: bool = False  # single-housed animal: its cage's untagged scores are its own

    def parts(self) -> list[tuple[str, list[Any]]]:
        """Index-friendly conditions whose rows, together, form the series (disjoint)."""
        if self.animal_id is None:
            return [("cage_id = ?", [self.cage_id])]
        parts = [("animal_id = ? AND animal_id != ''", [self.animal_id])]
        if self.include_cage_untagged and self.cage_id:
            parts.append(("cage_id = ? AND animal_id = ''", [self.cage_id]))
        return parts


def _table_for(bin_s: int, origin: float) -> tuple[str, int]:
    if bin_s % 3600 == 0 and int(origin) % 3600 == 0:
        return ROLLUP_TABLES[3600], 3600
    return ROLLUP_TABLES[300], 300


def binned_sums(
    conn, source: Source, t0: float, t1: float, bin_s: int, origin: float, now: float | None = None
) -> dict[int, dict]:
    """Bin index -> summed rollup columns, for buckets whose midpoint lies in [t0, t1). A window that ends at
    ``now`` (or later) takes the bucket still filling too: all of it lies before ``now``, and the newest
    images are the ones staff look for (1 h buckets would otherwise hide up to the last 30 minutes)."""
    table, width = _table_for(bin_s, origin)
    half = width // 2
    upper = t1 if now is not None and t1 >= now else t1 - half
    o = int(round(origin))
    cols = ", ".join(ROLLUP_SUMS)
    selects, params = [], []
    for condition, values in source.parts():
        selects.append(f"SELECT bucket, {cols} FROM {table} WHERE {condition} AND bucket >= ? AND bucket < ?")
        params += [*values, t0 - half, upper]
    sums = ", ".join(f"total({c})" for c in ROLLUP_SUMS)
    sql = f"SELECT bucket, {sums} FROM ({' UNION ALL '.join(selects)}) GROUP BY bucket"  # animals of a cage summed
    out: dict[int, list] = {}
    for bucket, *values in conn.execute(sql, params):
        b = (bucket + half - o) // bin_s
        acc = out.get(b)
        if acc is None:
            out[b] = values
        else:
            for i, v in enumerate(values):
                acc[i] += v
    # summed positionally above (the hot loop of every time course), named once per bin here
    return {b: dict(zip(ROLLUP_SUMS, v, strict=True)) for b, v in out.items()}


def unscorable_counts(s: dict | None) -> dict[str, Any]:
    """``n_unscorable`` and its split by reason (``out_of_domain``, ``no_face``, ``quality``)."""
    return {
        "n_unscorable": int(s["n_unscorable"]) if s else 0,
        "unscorable": {reason: int(s[c]) if s else 0 for c, reason in UNSCORABLE_SUMS.items()},
    }


def stats(s: dict | None) -> dict[str, Any]:
    """Rollup sums -> the per-bin figures the API returns. Every figure is over scorable images only;
    ``n_unscorable`` (and ``unscorable`` by reason) counts the others."""
    n = int(s["n"]) if s else 0
    out: dict[str, Any] = {"n": n, **unscorable_counts(s)}
    if not n:
        out.update(
            mean_amgs=None, sd_amgs=None, sem_amgs=None, frac_pain=None, n_pain=0, n_review=0, n_unsynced=0
        )
        out.update(au=None, mgs_au=None, activity=None, frac_asleep=None)
        return out
    mean = s["sum_amgs"] / n
    var = max(0.0, (s["sumsq_amgs"] - s["sum_amgs"] ** 2 / n) / (n - 1)) if n > 1 else None
    out.update(
        mean_amgs=mean,
        sd_amgs=math.sqrt(var) if var is not None else None,
        sem_amgs=math.sqrt(var / n) if var is not None else None,
        frac_pain=s["n_pain"] / n,
        n_pain=int(s["n_pain"]),
        n_review=int(s["n_review"]),
        n_unsynced=int(s["n_unsynced"]),
    )
    n_au = s["n_au"]
    out["au"] = {k: s[f"sum_{k}"] / n_au for k in AU_KEYS} if n_au else None
    out["mgs_au"] = s["sum_mgs_au"] / n_au if n_au else None
    out["activity"] = s["sum_motion"] / s["n_motion"] if s["n_motion"] else None
    out["frac_asleep"] = s["n_asleep"] / n
    return out


def add_sums(a: dict | None, b: dict) -> dict:
    """Rollup sums of two sets of buckets (``a`` may be None: nothing yet)."""
    return dict(b) if a is None else {k: a[k] + b[k] for k in ROLLUP_SUMS}


# --------------------------------------------------------------------------- rejected frames


def cage_devices(conn, cage_id: str) -> list[str]:
    """Devices assigned to a cage (any period) or reporting a view of it."""
    found = {
        r[0] for r in conn.execute("SELECT device_id FROM device_assignments WHERE cage_id = ?", [cage_id])
    }
    for device_id, views in conn.execute(
        "SELECT device_id, views_json FROM devices WHERE views_json IS NOT NULL"
    ):
        try:
            if any(v.get("cage_id") == cage_id for v in json.loads(views)):
                found.add(device_id)
        except (ValueError, AttributeError, TypeError):
            continue
    return sorted(found)


def rejected_by_bin(conn, devices: list[str], t0: float, t1: float, bin_s: int, origin: float) -> dict:
    """Bin index -> {reason: frames rejected}, from the reject rollups (status counter deltas).

    A delta counts in the bucket of the status that reported it; buckets go to the bin holding their start.
    """
    if not devices:
        return {}
    aligned = bin_s % 3600 == 0 and int(origin) % 3600 == 0
    table = REJECT_TABLES[3600 if aligned else 300]
    shift = (int(max(0.0, origin - t0)) // bin_s + 2) * bin_s
    marks = ", ".join("?" for _ in devices)
    rows = conn.execute(
        f"SELECT (bucket - ? + ?) / ? - ? AS b, reason, sum(n) FROM {table} "
        f"WHERE device_id IN ({marks}) AND bucket >= ? AND bucket < ? GROUP BY b, reason",
        [int(round(origin)), shift, bin_s, shift // bin_s, *devices, t0, t1],
    ).fetchall()
    out: dict[int, dict[str, int]] = {}
    for b, reason, n in rows:
        out.setdefault(int(b), {})[reason] = int(n)
    return out


# --------------------------------------------------------------------------- series


def local_midnight(t: float, photoperiod) -> float:
    tz = photoperiod.tz if photoperiod is not None else dt.UTC
    day = dt.datetime.fromtimestamp(t, tz).date()
    return dt.datetime.combine(day, dt.time(0), tzinfo=tz).timestamp()


def first_event(conn, kind: str, animal_id: str | None = None, cage_id: str | None = None) -> dict | None:
    """The animal's first event of ``kind``; else its cage's."""
    for column, value in (("animal_id", animal_id), ("cage_id", cage_id)):
        if value is None:
            continue
        clause, params = where({column: value, "kind": kind})
        for row in database(conn).query(
            f"SELECT {EVENT_COLUMNS} FROM events {clause} ORDER BY t LIMIT 1", params
        ):
            return row
    return None


def _alignment_event(
    conn, kind: str, animal_id: str | None = None, cage_id: str | None = None
) -> dict | None:
    """:func:`first_event` for a series to be drawn around: one stored outside 1970 .. 2100 (before the
    metadata checks refused such times) is a QueryError naming it, not a failure deep in the bins."""
    event = first_event(conn, kind, animal_id=animal_id, cage_id=cage_id)
    if event is not None and not MIN_TIME <= event["t"] < MAX_TIME:
        raise QueryError(
            f"event: the {kind} event {event['id']} at {event['at']!r} lies outside 1970 .. 2100: "
            "correct or delete it (amgs server event list / remove)"
        )
    return event


def baseline(conn, source: Source, event_t: float, hours: float) -> dict[str, Any]:
    """Mean aMGS over the ``hours`` before the event (the animal's own reference)."""
    t0 = event_t - hours * 3600
    total = None
    for s in binned_sums(conn, source, t0, event_t, MIN_BIN_S, event_t).values():
        total = add_sums(total, s)
    st = stats(total)
    return {
        "from": iso(t0),
        "to": iso(event_t),
        "hours": hours,
        "n": st["n"],
        "mean_amgs": st["mean_amgs"],
        "sem_amgs": st["sem_amgs"],
        "frac_pain": st["frac_pain"],
    }


def series(
    conn,
    source: Source,
    t0: float,
    t1: float,
    bin_s: int,
    *,
    photoperiod=None,
    event: dict | None = None,
    baseline_hours: float | None = None,
    devices: list[str] | None = None,
    include_empty: bool = True,
    now: float | None = None,
) -> dict[str, Any]:
    """One series: bins over [t0, t1), wall-clock aligned or in hours since ``event`` (``now``: see
    :func:`binned_sums`)."""
    if t1 <= t0:
        raise QueryError("end: must be after start")
    if (t1 - t0) / bin_s > MAX_BINS:
        raise QueryError(
            f"bin: {(t1 - t0) / bin_s:.0f} bins requested: use a wider bin or a shorter range (<= {MAX_BINS})"
        )
    origin = event["t"] if event else local_midnight(t0, photoperiod)
    sums = binned_sums(conn, source, t0, t1, bin_s, origin, now)
    rejected = rejected_by_bin(conn, devices or [], t0, t1, bin_s, origin) if devices else {}
    base = baseline(conn, source, event["t"], baseline_hours) if event and baseline_hours else None
    first = math.floor((t0 - origin) / bin_s)
    last = math.ceil((t1 - origin) / bin_s)
    phase_of = (
        PhaseLookup(origin + first * bin_s, origin + last * bin_s, photoperiod) if photoperiod else None
    )
    bins = []
    for b in range(first, last):
        if not include_empty and b not in sums:
            continue
        start = origin + b * bin_s
        row: dict[str, Any] = {"start": iso(start), "start_t": start, "end_t": start + bin_s}
        if event:
            row["hours"] = b * bin_s / 3600
        row.update(stats(sums.get(b)))
        if base is not None:
            m = row["mean_amgs"]
            row["delta_amgs"] = None if m is None or base["mean_amgs"] is None else m - base["mean_amgs"]
        row["rejected"] = rejected.get(b, {})
        if phase_of is not None:
            row["phase"] = phase_of(start, start + bin_s)
        bins.append(row)
    out: dict[str, Any] = {
        "start": iso(t0),
        "end": iso(t1),
        "bin_s": bin_s,
        "align": "event" if event else "wall",
        "event": event,
        "baseline": base,
        "bins": bins,
    }
    if photoperiod is not None:
        out["dark"] = [[iso(a), iso(b)] for a, b in dark_periods(t0, t1, photoperiod)]
    return out


def _window(t0, t1, event, default_before_h=24.0, default_after_h=72.0) -> tuple[float, float]:
    """Event-aligned requests without explicit times cover 24 h before to 72 h after the event."""
    if event is None:
        return t0, t1
    return (t0 if t0 is not None else event["t"] - default_before_h * 3600), (
        t1 if t1 is not None else event["t"] + default_after_h * 3600
    )


def _now_window(t0, t1, now, days=7.0) -> tuple[float, float]:
    end = t1 if t1 is not None else now
    return (t0 if t0 is not None else end - days * 86400), end


def cage_timecourse(
    conn,
    cage_id: str,
    *,
    start: float | None,
    end: float | None,
    bin_s: int,
    now: float,
    photoperiod=None,
    event_kind: str | None = None,
    baseline_hours: float | None = None,
    hours_before: float = 24.0,
    hours_after: float = 72.0,
) -> dict[str, Any]:
    """One cage (all its animals): wall clock over [start, end) (default: the 7 days before ``now``), or
    aligned to the first ``event_kind`` event, by default from ``hours_before`` to ``hours_after`` around it."""
    event = None
    if event_kind:
        event = _alignment_event(conn, event_kind, cage_id=cage_id)
        if event is None:
            raise QueryError(f"cage {cage_id!r} has no {event_kind!r} event to align to")
        start, end = _window(start, end, event, hours_before, hours_after)
    t0, t1 = _now_window(start, end, now)
    out = series(
        conn,
        Source(cage_id=cage_id),
        t0,
        t1,
        bin_s,
        photoperiod=photoperiod,
        event=event,
        baseline_hours=baseline_hours,
        devices=cage_devices(conn, cage_id),
        now=now,
    )
    if event is None and baseline_hours:
        out["baseline"] = _reference_baseline(conn, Source(cage_id=cage_id), baseline_hours, cage_id=cage_id)
    out["cage_id"] = cage_id
    out["events"] = events_between(conn, t0, t1, cage_id=cage_id)
    return out


def _reference_baseline(conn, source: Source, hours: float, **who) -> dict[str, Any] | None:
    """The baseline before the first :data:`BASELINE_EVENT` (for wall-clock charts), or None without one."""
    event = _alignment_event(conn, BASELINE_EVENT, **who)
    return baseline(conn, source, event["t"], hours) if event else None


def animal_row(conn, animal_id: str) -> dict[str, Any]:
    sql = "SELECT animal_id, cage_id, group_id, strain, sex, coat, housing FROM animals WHERE animal_id = ?"
    for row in database(conn).query(sql, [animal_id]):
        return row
    raise QueryError(f"animal {animal_id!r} is not registered: add it with `amgs server animal add`")


def animal_source(animal: dict) -> Source:
    return Source(
        cage_id=animal["cage_id"],
        animal_id=animal["animal_id"],
        include_cage_untagged=animal.get("housing") == "single",
    )


def animal_timecourse(
    conn,
    animal_id: str,
    *,
    start: float | None,
    end: float | None,
    bin_s: int,
    now: float,
    photoperiod=None,
    event_kind: str | None = None,
    baseline_hours: float | None = None,
    hours_before: float = 24.0,
    hours_after: float = 72.0,
) -> dict[str, Any]:
    """One animal: wall clock over [start, end) (default: the 7 days before ``now``), or
    aligned to the first ``event_kind`` event, by default from ``hours_before`` to ``hours_after`` around it."""
    animal = animal_row(conn, animal_id)
    event = None
    if event_kind:
        event = _alignment_event(conn, event_kind, animal_id=animal_id, cage_id=animal["cage_id"])
        if event is None:
            raise QueryError(f"animal {animal_id!r} (and its cage) has no {event_kind!r} event to align to")
        start, end = _window(start, end, event, hours_before, hours_after)
    t0, t1 = _now_window(start, end, now)
    devices = cage_devices(conn, animal["cage_id"]) if animal["cage_id"] else []
    out = series(
        conn,
        animal_source(animal),
        t0,
        t1,
        bin_s,
        photoperiod=photoperiod,
        event=event,
        baseline_hours=baseline_hours,
        devices=devices,
        now=now,
    )
    if event is None and baseline_hours:
        out["baseline"] = _reference_baseline(
            conn, animal_source(animal), baseline_hours, animal_id=animal_id, cage_id=animal["cage_id"]
        )
    out["animal"] = animal
    out["events"] = events_between(conn, t0, t1, cage_id=animal["cage_id"], animal_id=animal_id)
    return out


def _mean_sem(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var / len(values))


def group_timecourse(
    conn,
    group_id: str,
    *,
    bin_s: int,
    now: float,
    start: float | None = None,
    end: float | None = None,
    event_kind: str | None = "surgery",
    baseline_hours: float | None = None,
    hours_before: float = 24.0,
    hours_after: float = 72.0,
    photoperiod=None,
) -> dict[str, Any]:
    """Mean +/- SEM over the group's animals of each animal's per-bin mean aMGS (and fraction pain).

    With ``event_kind`` each animal is aligned to its own event and the window is given in hours
    (``hours_before``/``hours_after``); without it, bins are wall-clock over [start, end).
    """
    group = next(
        database(conn).query(
            "SELECT group_id, name, description, study FROM groups WHERE group_id = ?", [group_id]
        ),
        None,
    )
    if group is None:
        raise QueryError(f"group {group_id!r} does not exist: add it with `amgs server group add`")
    animal_ids = [r[0] for r in conn.execute("SELECT animal_id FROM animals WHERE group_id = ?", [group_id])]
    per_animal, skipped = {}, []
    for animal_id in animal_ids:
        animal = animal_row(conn, animal_id)
        if event_kind:
            try:
                event = _alignment_event(conn, event_kind, animal_id=animal_id, cage_id=animal["cage_id"])
            except QueryError as e:
                skipped.append({"animal_id": animal_id, "reason": str(e).removeprefix("event: ")})
                continue
            if event is None:
                skipped.append({"animal_id": animal_id, "reason": f"no {event_kind!r} event"})
                continue
            t0, t1 = event["t"] - hours_before * 3600, event["t"] + hours_after * 3600
        else:
            event = None
            t0, t1 = _now_window(start, end, now)
        s = series(
            conn,
            animal_source(animal),
            t0,
            t1,
            bin_s,
            event=event,
            baseline_hours=baseline_hours,
            photoperiod=None,
            now=now,
        )
        per_animal[animal_id] = s
    key = "hours" if event_kind else "start_t"
    collected: dict[float, dict[str, list[float]]] = {}
    for s in per_animal.values():
        for row in s["bins"]:
            slot = collected.setdefault(row[key], {"mean": [], "frac": [], "delta": [], "n": [], "u": []})
            slot["n"].append(row["n"])
            slot["u"].append(row["n_unscorable"])
            if row["n"]:
                slot["mean"].append(row["mean_amgs"])
                slot["frac"].append(row["frac_pain"])
                if row.get("delta_amgs") is not None:
                    slot["delta"].append(row["delta_amgs"])
    bins = []
    for k in sorted(collected):
        slot = collected[k]
        mean, sem = _mean_sem(slot["mean"])
        frac, frac_sem = _mean_sem(slot["frac"])
        delta, delta_sem = _mean_sem(slot["delta"])
        row = {
            key: k,
            "n_animals": len(slot["mean"]),
            "n_images": sum(slot["n"]),
            "n_unscorable": sum(slot["u"]),
        }
        if not event_kind:
            row["start"] = iso(k)
        row.update(mean_amgs=mean, sem_amgs=sem, frac_pain=frac, sem_frac_pain=frac_sem)
        if baseline_hours:
            row.update(delta_amgs=delta, sem_delta_amgs=delta_sem)
        bins.append(row)
    return {
        "group": group,
        "align": "event" if event_kind else "wall",
        "event_kind": event_kind,
        "bin_s": bin_s,
        "baseline_hours": baseline_hours,
        "animals": sorted(per_animal),
        "skipped": skipped,
        "bins": bins,
        "per_animal": {
            a: {"event": s["event"], "baseline": s["baseline"], "bins": s["bins"]}
            for a, s in per_animal.items()
        },
    }


def events_between(
    conn, t0: float, t1: float, cage_id: str | None = None, animal_id: str | None = None
) -> list:
    """Events in [t0, t1) of the cage or the animal (either matches)."""
    who = [(f"{col} = ?", value) for col, value in (("cage_id", cage_id), ("animal_id", animal_id)) if value]
    either = [(" OR ".join(c for c, _ in who), [v for _, v in who])] if who else []
    clause, params = where(None, *either, ("t >= ?", [t0]), ("t < ?", [t1]))
    return list(database(conn).query(f"SELECT {EVENT_COLUMNS} FROM events {clause} ORDER BY t", params))
