"""The single writer: commits a batch of classified messages in one transaction.

Per batch: new scores are inserted idempotently (``msg_id``; duplicates counted, conflicting ones
quarantined: ``duplicates.py``), their capture times re-anchored and then bounded
(``capture_time.py``), their ``seq`` tracked (gaps, watermark, refused jumps: ``sequence.py``),
rollups updated (``rollups.py``); device statuses (``device_status.py``), crops (``crops.py``) and
refused messages (``quarantine.py``) stored. The in-memory state (sequences, clock anchors) is rolled
back with the transaction when a commit fails, so a retried batch is exact. Maintenance (gap expiry,
re-anchoring, retention) runs in the same thread.

Only this class writes scores, devices, gaps, rollups, quarantine and crops; it owns its connection.
"""

from __future__ import annotations

import operator
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from amgs.contract import Status, parse_time
from amgs.server.models.registry import store_device_models, store_shadow
from amgs.server.storage.db import SCORE_COLUMNS, CollectorDB
from amgs.sqlite_tx import write_transaction

from . import duplicates
from .capture_time import ClockAnchors, time_problem, trusted_time
from .classify import Classified, classify
from .crops import store_crop
from .device_status import store_status
from .incoming import Incoming
from .quarantine import quarantine
from .retention import apply_retention
from .rollups import ADD_ROWS_AFTER
from .sequence import DeviceSeq, Sequences

__all__ = ["BatchResult", "DeviceSeq", "Ingestor"]


@dataclass
class BatchResult:
    acks: list[tuple[int, int, int]] = field(default_factory=list)  # (mid, qos, generation)
    watermarks: dict[str, tuple[str, int]] = field(default_factory=dict)  # device -> (site, committed_seq)
    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0  # same msg_id, different content: quarantined (also counted in ``quarantined``)
    quarantined: int = 0
    statuses: int = 0
    crops: int = 0
    unsynced: int = 0
    fields: list[str] = field(default_factory=list)  # per quarantined message, the field its reason names


INSERT_COLUMNS = (*SCORE_COLUMNS, "clock_corrected")
_SCORE_INSERT = (
    f"INSERT INTO scores ({', '.join(INSERT_COLUMNS)}) VALUES ({', '.join('?' for _ in INSERT_COLUMNS)})"
)
_insert_values = operator.itemgetter(*INSERT_COLUMNS)


class Ingestor:
    """Stores batches. Not thread-safe: exactly one writer thread owns an instance."""

    def __init__(self, db: CollectorDB, config) -> None:
        self.config = config
        self.db = db
        self.conn = db.connect().conn
        self.sequences = Sequences(self.conn, config.ingest.max_seq_jump)
        self.anchors = ClockAnchors(self.conn)
        self.registered: set[str] | None = None
        self.refresh_registered()

    @property
    def seqs(self) -> dict[str, DeviceSeq]:
        return self.sequences.devices

    def _seq(self, device_id: str, site: str | None) -> DeviceSeq:
        return self.sequences.get(device_id, site)

    # ---------------------------------------------------------------- registered devices

    def refresh_registered(self) -> None:
        """Reload the registered devices (run periodically: devices revoked since drop out)."""
        if self.config.ingest.require_registered_devices:
            rows = self.conn.execute("SELECT device_id FROM devices WHERE registered = 1")
            self.registered = {r[0] for r in rows}

    def is_registered(self, device_id: str) -> bool:
        """Known registered, or registered since the last refresh (a device provisioned a moment ago)."""
        if self.registered is None or device_id in self.registered:
            return True
        row = self.conn.execute("SELECT registered FROM devices WHERE device_id = ?", [device_id]).fetchone()
        if row and row[0]:
            self.registered.add(device_id)
            return True
        return False

    def _ensure_device(self, device_id: str, site: str | None) -> None:
        self.conn.execute("INSERT OR IGNORE INTO devices (device_id, site) VALUES (?, ?)", [device_id, site])

    # ---------------------------------------------------------------- batches

    def process(self, batch: list[Incoming], now: float | None = None) -> BatchResult:
        """Classify and commit a batch. Raises sqlite3.Error (nothing committed, state restored) on failure."""
        now = time.time() if now is None else now
        batch = [m if m.received_at else m._replace(received_at=now) for m in batch]
        check = self.is_registered if self.registered is not None else None
        crop_max = self.config.storage.crop_max_bytes
        classified = [classify(m, crop_max_bytes=crop_max, is_registered=check) for m in batch]
        snapshot = self.sequences.snapshot(), self.anchors.snapshot()
        result = BatchResult()
        written: list[Path] = []
        try:
            with write_transaction(self.conn):
                self._store_scores([c for c in classified if c.kind == "score"], now, result)
                for c in classified:
                    if c.kind == "status":
                        self._store_status(c, now)
                        result.statuses += 1
                    elif c.kind == "crop":
                        storage = self.config.storage
                        if store_crop(
                            self.conn,
                            storage,
                            c.device_id,
                            c.extra["msg_id"],
                            c.incoming.payload,
                            now,
                            written,
                        ):
                            result.crops += 1
                    elif c.kind == "quarantine":
                        self._quarantine(c, c.reason or "invalid", c.field or "payload", now, result)
        except BaseException:
            self.sequences.restore(snapshot[0])
            self.anchors.restore(snapshot[1])
            for path in written:
                path.unlink(missing_ok=True)
            raise
        result.acks = [(m.mid, m.qos, m.generation) for m in batch if m.qos > 0]
        return result

    def _quarantine(self, c: Classified, reason: str, field_: str, now: float, result: BatchResult) -> None:
        cap = self.config.storage.quarantine_payload_bytes
        quarantine(self.conn, c.incoming, reason, c.device_id, now, cap)
        result.quarantined += 1
        result.fields.append(field_)

    def _store_scores(self, items: list[Classified], now: float, result: BatchResult) -> None:
        if not items:
            return
        new = self._new_records(items, now, result)
        if not new:
            return
        last_rowid = self.conn.execute("SELECT coalesce(max(rowid), 0) FROM scores").fetchone()[0]
        self.conn.executemany(_SCORE_INSERT, [_insert_values(c.row) for c in new])
        for sql in ADD_ROWS_AFTER:
            self.conn.execute(sql, [last_rowid])
        self._after_insert(new, now, result)

    def _new_records(self, items: list[Classified], now: float, result: BatchResult) -> list[Classified]:
        """The batch's records not stored before, in (device, seq) order, each time and seq judged: duplicates
        counted, conflicting copies and impossible records quarantined. The same for both engines."""
        found = duplicates.sort_out(self.conn, items)
        for c in found.duplicates:
            result.duplicates += 1
            self._ensure_device(c.device_id, None)
            self.conn.execute(
                "UPDATE devices SET duplicates = duplicates + 1 WHERE device_id = ?", [c.device_id]
            )
        for c, reason in found.conflicts:
            result.conflicts += 1
            self._quarantine(c, reason, "msg_id", now, result)
        # every device that sent scores gets its watermark re-published, even for pure duplicates
        for c in items:
            result.watermarks[c.device_id] = (c.site, self._seq(c.device_id, c.site).committed)
        return self._refuse(sorted(found.new, key=lambda c: (c.device_id, c.row["seq"])), now, result)

    def _after_insert(self, stored: list[Classified], now: float, result: BatchResult) -> None:
        """Once a batch's new rows are in ``scores`` (and its rollups): their shadow scores, and per device
        the sequence state, the watermark and the counters. The same for both engines."""
        # a candidate model's score of the same face (shadow mode) is kept apart: never in scores/rollups
        store_shadow(self.conn, [(c.extra, c.row) for c in stored if c.extra.get("shadow")])
        per_device: dict[str, list[dict]] = defaultdict(list)
        for c in stored:
            per_device[c.device_id].append(c.row)
        for device_id, dev_rows in per_device.items():
            site = dev_rows[0]["site"]
            self._ensure_device(device_id, site)
            state = self._seq(device_id, site)
            for r in dev_rows:
                self.sequences.track(device_id, state, r["seq"], now, r["received_at"])
            state.advance()
            unsynced = sum(1 for r in dev_rows if not r["clock_synced"])
            result.unsynced += unsynced
            self.conn.execute(
                "UPDATE devices SET site = ?, committed_seq = ?, max_seq = ?, scores_total = scores_total + ?, "
                "unsynced_total = unsynced_total + ?, last_seen = ?, "
                "last_score_t = max(coalesce(last_score_t, 0), ?) WHERE device_id = ?",
                [
                    site,
                    state.committed,
                    state.max_seq,
                    len(dev_rows),
                    unsynced,
                    now,
                    max(r["t"] for r in dev_rows),
                    device_id,
                ],
            )
            result.watermarks[device_id] = (site, state.committed)
        result.stored += len(stored)

    def _refuse(self, new: list[Classified], now: float, result: BatchResult) -> list[Classified]:
        """Quarantine new records whose time or ``seq`` cannot be right; re-anchor the rest.

        Synchronized times are judged first, so a wrong one cannot become an anchor; then the anchors
        move unsynchronized times, and only then are those judged (a 1970 time of a Pi that has not
        set its clock yet is re-anchored, not refused)."""
        ahead = self.config.ingest.max_clock_ahead_s
        plausible: list[Classified] = []
        for c in new:
            if c.row["clock_synced"] and (why := time_problem(c.row, now, ahead)) is not None:
                self._quarantine(c, f"captured_at: {why}", "captured_at", now, result)
            else:
                plausible.append(c)
        self.anchors.apply([c.row for c in plausible], now)
        kept: list[Classified] = []
        highest: dict[str, int] = {}
        for c in plausible:  # sorted by device, then seq
            if c.device_id not in highest:
                highest[c.device_id] = self._seq(c.device_id, c.site).max_seq
            seq = c.row["seq"]
            if not c.row["clock_synced"] and (why := time_problem(c.row, now, ahead)) is not None:
                self._quarantine(c, f"captured_at: {why}", "captured_at", now, result)
            elif (why := self.sequences.jump_problem(highest[c.device_id], seq)) is not None:
                self._quarantine(c, f"seq: {why}", "seq", now, result)
            else:
                kept.append(c)
                highest[c.device_id] = max(highest[c.device_id], seq)
        return kept

    def _store_status(self, c: Classified, now: float) -> None:
        msg: Status = c.message
        self._ensure_device(c.device_id, c.site)
        clock = msg.clock
        if clock is not None and clock.synced:
            t = parse_time(msg.at).timestamp()
            if trusted_time(t, now, self.config.ingest.max_clock_ahead_s):  # a wrong clock anchors nothing
                self.anchors.set(c.device_id, clock.boot_id, t - clock.monotonic_s, now)
        store_status(self.conn, c.device_id, c.site, msg, now)
        store_device_models(self.conn, c.device_id, msg.wire())

    def quarantine_alone(self, item: Incoming, reason: str, now: float) -> BatchResult:
        """Quarantine one message in its own transaction (when storing it failed for an unexpected reason)."""
        with write_transaction(self.conn):
            quarantine(self.conn, item, reason, None, now, self.config.storage.quarantine_payload_bytes)
        return BatchResult(
            acks=[(item.mid, item.qos, item.generation)] if item.qos else [],
            quarantined=1,
            fields=["internal"],
        )

    # ---------------------------------------------------------------- maintenance (same thread)

    def all_watermarks(self) -> dict[str, tuple[str, int]]:
        return self.sequences.all_watermarks()

    def expire_gaps(self, now: float) -> dict[str, tuple[str, int]]:
        """Give up on gaps older than ingest.gap_timeout_s: mark them lost, move watermarks past them."""
        return self.sequences.expire_gaps(now, self.config.ingest.gap_timeout_s)

    def reanchor(self, now: float, limit: int = 5000) -> int:
        return self.anchors.reanchor(now, limit)

    def apply_retention(self, now: float) -> dict[str, int]:
        return apply_retention(self.conn, self.config.storage, now)
