"""Storing batches in PostgreSQL, safely beside other workers writing the same database.

Everything but the score insert is the :class:`~amgs.server.ingest.store.Ingestor`'s own code, its SQL
translated by the dialect layer (``server/storage/pg.py``). The score insert differs because PostgreSQL
lets several workers write at once (SQLite takes one writer at a time):

1. the batch's devices get their row (``ON CONFLICT DO NOTHING``) and are locked ``FOR UPDATE`` in a fixed
   order: workers storing the same device take turns, workers storing different devices do not wait;
2. only then is each device's sequence state read (committed watermark, pending seqs, lost gaps): the state
   every earlier commit left (``SharedIngestor`` forgets what it held before each batch);
3. the rows are copied (``COPY``) into a temporary table and inserted with ``ON CONFLICT (msg_id) DO
   NOTHING RETURNING msg_id``: exactly the rows this transaction added count as new - a copy another worker
   stored a moment ago (a redelivery) is a duplicate, never counted twice;
4. the rollups are updated from those rows by the one SQL definition (``schema.rollup_select``), gaps and
   watermarks advanced, the devices updated, all in the batch's transaction.
"""

from __future__ import annotations

import logging

from amgs.server.storage.db import ROLLUP_TABLES
from amgs.server.storage.pg import PgConnection

from .classify import Classified
from .rollups import rollup_upsert
from .store import INSERT_COLUMNS, BatchResult, _insert_values
from .workers import SharedIngestor

log = logging.getLogger(__name__)

_ROLLUP_ADD_BATCH = [rollup_upsert(width, "msg_id = ANY(?)") for width in ROLLUP_TABLES]
_COLS = ", ".join(INSERT_COLUMNS)


class PgIngestor(SharedIngestor):
    """An :class:`Ingestor` on PostgreSQL, one of any number of workers on the same database."""

    conn: PgConnection

    def process(self, batch, now: float | None = None) -> BatchResult:
        if self.conn.raw.closed or self.conn.raw.broken:  # the server restarted: a new connection
            log.warning("reconnecting to PostgreSQL at %s", self.db.path)
            self.conn = self.sequences.conn = self.anchors.conn = self.db.connect()
        return super().process(batch, now)

    def _ensure_temp(self) -> None:
        # every batch: a rolled-back batch takes the CREATE of its transaction with it
        self.conn.raw.execute(
            "CREATE TEMP TABLE IF NOT EXISTS batch_scores (LIKE scores INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )

    def _store_scores(self, items: list[Classified], now: float, result: BatchResult) -> None:
        if not items:
            return
        sites: dict[str, str | None] = {}
        for c in items:
            sites.setdefault(c.device_id, c.site)
        devices = sorted(sites)
        self.conn.executemany(
            "INSERT OR IGNORE INTO devices (device_id, site) VALUES (?, ?)", [(d, sites[d]) for d in devices]
        )
        self.conn.execute(
            "SELECT device_id FROM devices WHERE device_id = ANY(?) ORDER BY device_id FOR UPDATE", [devices]
        )
        # from here on, what other workers committed for these devices is what we read
        new = self._new_records(items, now, result)
        if not new:
            return
        self._ensure_temp()
        cur = self.conn.raw.cursor()
        with cur.copy(f"COPY batch_scores ({_COLS}) FROM STDIN") as copy:
            for c in new:
                copy.write_row(_insert_values(c.row))
        new_ids = {
            r[0]
            for r in self.conn.raw.execute(
                f"INSERT INTO scores ({_COLS}) SELECT {_COLS} FROM batch_scores "
                "ON CONFLICT (msg_id) DO NOTHING RETURNING msg_id"
            ).fetchall()
        }
        self.conn.raw.execute("TRUNCATE batch_scores")
        for c in new:
            if c.row["msg_id"] not in new_ids:  # stored by another worker since sort_out: a duplicate
                result.duplicates += 1
                self.conn.execute(
                    "UPDATE devices SET duplicates = duplicates + 1 WHERE device_id = ?", [c.device_id]
                )
        if not new_ids:
            return
        for sql in _ROLLUP_ADD_BATCH:
            self.conn.execute(sql, [list(new_ids)])
        self._after_insert([c for c in new if c.row["msg_id"] in new_ids], now, result)

    def reanchor(self, now: float, limit: int = 5000) -> int:
        """:meth:`Ingestor.reanchor` by ``msg_id`` (PostgreSQL has no rowid)."""
        found = self.conn.execute(
            "SELECT s.msg_id, a.offset_s + s.monotonic_s FROM clock_anchors a JOIN scores s "
            "ON s.device_id = a.device_id AND s.boot_id = a.boot_id "
            "WHERE s.clock_synced = 0 AND s.clock_corrected = 0 LIMIT ?",
            [limit],
        ).fetchall()
        if not found:
            return 0
        ids = [r[0] for r in found]
        where = "msg_id = ANY(?)"
        self.conn.execute("BEGIN")
        try:
            for width in ROLLUP_TABLES:
                self.conn.execute(rollup_upsert(width, where, sign="-"), [ids])
            self.conn.executemany(
                "UPDATE scores SET t = ?, clock_corrected = 1 WHERE msg_id = ?", [(t, m) for m, t in found]
            )
            for width in ROLLUP_TABLES:
                self.conn.execute(rollup_upsert(width, where), [ids])
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        log.info("re-anchored %d score time(s) from unsynchronized clocks", len(found))
        return len(found)
