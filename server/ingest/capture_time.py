"""When was a score captured? Re-anchoring unsynchronized device clocks, then the plausibility bounds.

A Pi without a real-time clock boots at 1970 (or at the time it last saved) until NTP sets its clock;
its scores say ``clock.synced = false``. Every synchronized score or status of a device boot
(``clock.boot_id``) records the anchor wall time - ``clock.monotonic_s`` (``clock_anchors``); an
unsynchronized score of that boot gets ``t = anchor + monotonic_s`` and ``clock_corrected = 1``, on
arrival when the anchor is known, otherwise by :meth:`ClockAnchors.reanchor` once it is. The device's
own ``captured_at`` is kept as sent.

Re-anchoring comes first; the bounds then judge the time the score will be stored under
(:func:`time_problem`): nothing may lie more than ``ingest.max_clock_ahead_s`` ahead of the collector's
clock, nothing before 1970 (no clock reads that), and a *trusted* time (synchronized, or re-anchored)
not before 2000. An unsynchronized time before 2000 without an anchor yet is what a clock that was
never set reads: it is stored, flagged, and moved once its boot's anchor arrives.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from typing import Any

from amgs.contract import format_time
from amgs.server.storage.db import ROLLUP_TABLES
from amgs.sqlite_tx import write_transaction

from .rollups import rollup_upsert

log = logging.getLogger(__name__)

EARLIEST_TRUSTED = 946684800.0
"""2000-01-01: a synchronized (or re-anchored) capture time before this comes from a broken clock."""


def time_problem(row: dict[str, Any], now: float, max_ahead_s: float) -> str | None:
    """Why the (re-anchored) capture time of a score row cannot be stored, or None when it can."""
    t = row["t"]
    trusted = row["clock_synced"] or row.get("clock_corrected")
    shown = row["captured_at"] if not row.get("clock_corrected") else f"{format_time_s(t)} (re-anchored)"
    if t > now + max_ahead_s:
        return (
            f"{shown} is {t - now:.0f} s ahead of the collector's clock (more than "
            f"ingest.max_clock_ahead_s = {max_ahead_s:g} s): a wrong device clock"
        )
    if t < 0:
        return f"{shown} is before 1970: no device clock reads that"
    if trusted and t < EARLIEST_TRUSTED:
        return f"{shown}: a capture time before 2000 from a synchronized clock: the clock is not usable"
    return None


def trusted_time(t: float, now: float, max_ahead_s: float) -> bool:
    """A synchronized clock's time that may anchor a boot: from 2000 on, not ahead of the collector."""
    return EARLIEST_TRUSTED <= t <= now + max_ahead_s


def format_time_s(t: float) -> str:
    try:
        return format_time(datetime.fromtimestamp(t, UTC))
    except (OverflowError, OSError, ValueError):
        return f"t = {t:.0f}"


class ClockAnchors:
    """Anchors per (device, boot), cached; the cache is part of the writer's state (snapshot/restore)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.cache: dict[tuple[str, str], float | None] = {}  # (device, boot) -> wall - monotonic

    def snapshot(self) -> dict:
        return dict(self.cache)

    def restore(self, snapshot: dict) -> None:
        self.cache = snapshot

    def get(self, device_id: str, boot_id: str) -> float | None:
        key = (device_id, boot_id)
        if key not in self.cache:
            row = self.conn.execute(
                "SELECT offset_s FROM clock_anchors WHERE device_id = ? AND boot_id = ?", key
            ).fetchone()
            self.cache[key] = row[0] if row else None
        return self.cache[key]

    def set(self, device_id: str, boot_id: str, offset: float, now: float) -> None:
        self.cache[(device_id, boot_id)] = offset
        self.conn.execute(
            "INSERT INTO clock_anchors (device_id, boot_id, offset_s, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (device_id, boot_id) DO UPDATE SET offset_s = excluded.offset_s, "
            "updated_at = excluded.updated_at",
            [device_id, boot_id, offset, now],
        )

    def apply(self, rows: list[dict[str, Any]], now: float) -> None:
        """Learn anchors from synchronized rows; give unsynchronized ones the anchored time of their boot."""
        fresh: dict[tuple[str, str], float] = {}
        for r in rows:
            r["clock_corrected"] = 0
            if r["clock_synced"] and r["boot_id"]:
                fresh[(r["device_id"], r["boot_id"])] = r["t"] - r["monotonic_s"]
        for (device_id, boot_id), offset in fresh.items():
            self.set(device_id, boot_id, offset, now)
        for r in rows:
            if not r["clock_synced"] and r["boot_id"]:
                offset = self.get(r["device_id"], r["boot_id"])
                if offset is not None:
                    r["t"] = offset + r["monotonic_s"]
                    r["clock_corrected"] = 1

    def reanchor(self, now: float, limit: int = 5000) -> int:
        """Move scores stored before their boot had an anchor to the anchored time (rollups follow)."""
        found = self.conn.execute(
            "SELECT s.rowid, a.offset_s + s.monotonic_s FROM clock_anchors a JOIN scores s "
            "ON s.device_id = a.device_id AND s.boot_id = a.boot_id "
            "WHERE s.clock_synced = 0 AND s.clock_corrected = 0 LIMIT ?",
            [limit],
        ).fetchall()
        if not found:
            return 0
        where = "rowid IN (SELECT id FROM temp.reanchor)"
        with write_transaction(self.conn):
            self.conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS reanchor (id INTEGER PRIMARY KEY, t REAL NOT NULL)"
            )
            self.conn.execute("DELETE FROM temp.reanchor")
            self.conn.executemany("INSERT INTO temp.reanchor (id, t) VALUES (?, ?)", found)
            for width in ROLLUP_TABLES:
                self.conn.execute(rollup_upsert(width, where, sign="-"))
            self.conn.execute(
                f"UPDATE scores SET t = (SELECT t FROM temp.reanchor WHERE id = scores.rowid), clock_corrected = 1 "
                f"WHERE {where}"
            )
            for width in ROLLUP_TABLES:
                self.conn.execute(rollup_upsert(width, where))
        log.info("re-anchored %d score time(s) from unsynchronized clocks", len(found))
        return len(found)
