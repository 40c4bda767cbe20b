"""The quarantine: every refused message is kept as evidence (topic, reason, first bytes, size), not dropped."""

from __future__ import annotations

import hashlib
import sqlite3

from .incoming import Incoming


def quarantine(
    conn: sqlite3.Connection, item: Incoming, reason: str, device_id: str | None, now: float, payload_cap: int
) -> None:
    """Keep the evidence: topic, reason, the first ``payload_cap`` bytes of the payload; repeats only counted."""
    digest = hashlib.sha1(item.payload).hexdigest()
    conn.execute(
        "INSERT INTO quarantine (received_at, last_received_at, topic, device_id, reason, payload, payload_size, "
        "payload_sha1) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (topic, payload_sha1) DO UPDATE SET "
        "count = count + 1, last_received_at = excluded.last_received_at",
        [
            now,
            now,
            item.topic[:1024],
            device_id,
            reason[:2000],
            item.payload[:payload_cap],
            len(item.payload),
            digest,
        ],
    )
