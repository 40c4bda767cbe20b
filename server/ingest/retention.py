"""Retention: raw scores, quarantine and status history past their age limits; crops beyond their cap.

Rollups are kept forever, so time courses outlive the raw scores. Runs hourly in the writer thread.
"""

from __future__ import annotations

import sqlite3


def apply_retention(conn: sqlite3.Connection, storage, now: float) -> dict[str, int]:
    """Delete raw scores, quarantine and status history past their retention; trim crops to the cap."""
    deleted = {"scores": 0, "quarantine": 0, "status_log": 0, "crops": 0}
    if storage.raw_retention_days:
        cutoff = now - storage.raw_retention_days * 86400
        deleted["scores"] = _delete_chunked(conn, "scores", "t < ?", cutoff)
    if storage.quarantine_retention_days:
        cutoff = now - storage.quarantine_retention_days * 86400
        deleted["quarantine"] = _delete_chunked(conn, "quarantine", "last_received_at < ?", cutoff)
        deleted["status_log"] = _delete_chunked(conn, "status_log", "t < ?", cutoff)
    cap = storage.crops_max_total_mb * 1024 * 1024
    total = conn.execute("SELECT coalesce(sum(size), 0) FROM crops").fetchone()[0]
    while total > cap:
        rows = conn.execute("SELECT msg_id, size, path FROM crops ORDER BY received_at LIMIT 200").fetchall()
        if not rows:
            break
        for msg_id, size, path in rows:
            (storage.state_dir / path).unlink(missing_ok=True)
            conn.execute("DELETE FROM crops WHERE msg_id = ?", [msg_id])
            total -= size
            deleted["crops"] += 1
            if total <= cap:
                break
    return deleted


def _delete_chunked(conn: sqlite3.Connection, table: str, where: str, value: float) -> int:
    """Delete in chunks of 5,000 (each its own short write), so readers and the writer are not held up."""
    total = 0
    while True:
        n = conn.execute(
            f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {where} LIMIT 5000)",
            [value],
        ).rowcount
        total += n
        if n < 5000:
            return total
