"""Redelivered scores and conflicting ones: the same ``msg_id`` again, with the same or other content.

A device re-sends what it has not seen confirmed, and the broker redelivers what the collector did not
acknowledge, so the same record arriving again is normal: it is a *duplicate*, counted and dropped.
The same ``msg_id`` with different content (another cage, score, seq ...) is not: a device bug or a
forged record. It is a *conflict*: the stored record is kept, the new one is quarantined with the fields
that differ (both values) in the reason, counted (``amgs_ingest_duplicates_conflicting_total``) and
logged.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from amgs.server.storage.db import SCORE_COLUMNS

from .classify import Classified

log = logging.getLogger(__name__)

CONTENT_COLUMNS = tuple(c for c in SCORE_COLUMNS if c not in ("received_at", "t"))
"""What makes two records the same record: everything the device sent (``t`` follows from it, or from
re-anchoring; ``received_at`` is the collector's)."""


@dataclass
class Sorted:
    new: list[Classified] = field(default_factory=list)
    duplicates: list[Classified] = field(default_factory=list)
    conflicts: list[tuple[Classified, str]] = field(default_factory=list)  # (record, quarantine reason)


def differences(stored: dict[str, Any], incoming: dict[str, Any], limit: int = 8) -> list[str]:
    """``"cage_id 'c1' -> 'c2'"`` for each content column that differs (at most ``limit``)."""
    out = [
        f"{c} {stored[c]!r:.60} -> {incoming[c]!r:.60}" for c in CONTENT_COLUMNS if stored[c] != incoming[c]
    ]
    return out[:limit] + ([f"and {len(out) - limit} more"] if len(out) > limit else [])


def _conflict(c: Classified, stored: dict[str, Any], where: str) -> tuple[Classified, str]:
    diff = ", ".join(differences(stored, c.row))
    reason = f"msg_id: {where} has this msg_id with different content ({diff}); the first is kept"
    log.warning(
        "conflicting duplicate %s from device %s: %s (quarantined; a device bug or a forged record)",
        c.row["msg_id"],
        c.device_id,
        diff,
    )
    return c, reason


def sort_out(conn: sqlite3.Connection, items: list[Classified]) -> Sorted:
    """Split a batch's score records into new ones, plain duplicates and conflicts. The reference for a
    ``msg_id`` is the stored record, else the batch's first record with it (which is new)."""
    result = Sorted()
    by_id: dict[str, list[Classified]] = {}
    for c in items:
        by_id.setdefault(c.row["msg_id"], []).append(c)
    stored: dict[str, dict[str, Any]] = {}
    ids = list(by_id)
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        q = f"SELECT {', '.join(CONTENT_COLUMNS)} FROM scores WHERE msg_id IN ({', '.join('?' for _ in chunk)})"
        stored.update({r[0]: dict(zip(CONTENT_COLUMNS, r, strict=True)) for r in conn.execute(q, chunk)})
    for msg_id, same_id in by_id.items():
        reference, where = stored.get(msg_id), "a stored record"
        if reference is None:
            result.new.append(same_id[0])
            reference, where = same_id[0].row, "an earlier record of the same batch"
            same_id = same_id[1:]
        for c in same_id:
            if any(reference[k] != c.row[k] for k in CONTENT_COLUMNS):
                result.conflicts.append(_conflict(c, reference, where))
            else:
                result.duplicates.append(c)
    return result
