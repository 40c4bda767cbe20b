"""Keeping the score rollups (``rollup_5m`` / ``rollup_1h``) in step with the ``scores`` rows they sum."""

from __future__ import annotations

from amgs.server.storage.db import ROLLUP_SUMS, ROLLUP_TABLES, rollup_select


def rollup_upsert(width: int, where: str, sign: str = "") -> str:
    """Add (or with ``sign="-"`` remove) the scores matching ``where`` to the rollups (db.rollup_select)."""
    table = ROLLUP_TABLES[width]
    return (
        f"INSERT INTO {table} (cage_id, animal_id, bucket, {', '.join(ROLLUP_SUMS)}) "
        f"{rollup_select(width, where, sign)} ON CONFLICT (cage_id, animal_id, bucket) "
        f"DO UPDATE SET {', '.join(f'{c} = {c} + excluded.{c}' for c in ROLLUP_SUMS)}"
    )


ADD_ROWS_AFTER = [rollup_upsert(width, "rowid > ?") for width in ROLLUP_TABLES]
"""Add every score row inserted after a given rowid (one statement per rollup table)."""
