"""The single writer: commits a batch of classified messages in one transaction.

Per batch: new scores are inserted idempotently (``msg_id``), duplicates counted, per-device sequence
numbers tracked (gaps recorded in ``seq_gaps``; the committed watermark = highest contiguous stored
seq), rollups updated, device status and crops stored, invalid messages quarantined. The in-memory
sequence state is rolled back with the transaction when a commit fails, so a retried batch is exact.

Only this class writes scores, devices, gaps, rollups, quarantine and crops; it owns its connection.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import operator
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amgs.contract import parse_time
from amgs.server.models.registry import store_device_models, store_shadow
from amgs.server.storage.db import (
    ROLLUP_SUMS,
    ROLLUP_TABLES,
    SCORE_COLUMNS,
    CollectorDB,
    add_rejects,
    reject_deltas,
    rollback,
    rollup_select,
)

from .classify import Classified, Incoming, classify

log = logging.getLogger(__name__)

STATUS_LOG_EVERY_S = 600.0
"""status_log keeps every state or reason change, and otherwise one status per device per 10 min."""


@dataclass
class DeviceSeq:
    """Sequence bookkeeping of one device: what is committed and what lies above the watermark."""

    site: str | None
    committed: int = 0
    max_seq: int = 0
    pending: set[int] = field(default_factory=set)
    lost: dict[int, int] = field(default_factory=dict)  # first -> last of gaps given up on, above committed
    epoch_start: float = 0.0  # received_at of the record that restarted the numbering at 1

    def advance(self) -> None:
        while True:
            nxt = self.committed + 1
            if nxt in self.pending:
                self.committed = nxt
                continue
            lost_end = next((last for first, last in self.lost.items() if first <= nxt <= last), None)
            if lost_end is None:
                break
            self.committed = lost_end
        self.pending = {s for s in self.pending if s > self.committed}
        self.lost = {f: last for f, last in self.lost.items() if last > self.committed}


@dataclass
class BatchResult:
    acks: list[tuple[int, int, int]] = field(default_factory=list)  # (mid, qos, generation)
    watermarks: dict[str, tuple[str, int]] = field(default_factory=dict)  # device -> (site, committed_seq)
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    statuses: int = 0
    crops: int = 0
    unsynced: int = 0
    reasons: list[str] = field(default_factory=list)


def rollup_upsert(width: int, where: str, sign: str = "") -> str:
    """Add (or with ``sign="-"`` remove) the scores matching ``where`` to the rollups (db.rollup_select)."""
    table = ROLLUP_TABLES[width]
    return (
        f"INSERT INTO {table} (cage_id, animal_id, bucket, {', '.join(ROLLUP_SUMS)}) "
        f"{rollup_select(width, where, sign)} ON CONFLICT (cage_id, animal_id, bucket) "
        f"DO UPDATE SET {', '.join(f'{c} = {c} + excluded.{c}' for c in ROLLUP_SUMS)}"
    )


_ROLLUP_ADD_NEW = [rollup_upsert(width, "rowid > ?") for width in ROLLUP_TABLES]
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
        self.seqs: dict[str, DeviceSeq] = {}
        self.anchors: dict[tuple[str, str], float | None] = {}  # (device, boot) -> wall - monotonic
        self.registered: set[str] | None = None
        self.refresh_registered()

    # ---------------------------------------------------------------- state

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

    def _seq(self, device_id: str, site: str | None) -> DeviceSeq:
        state = self.seqs.get(device_id)
        if state is None:
            row = self.conn.execute(
                "SELECT site, committed_seq, max_seq, seq_epoch_start FROM devices WHERE device_id = ?",
                [device_id],
            ).fetchone()
            state = DeviceSeq(site=row[0] if row else site)
            if row:
                state.committed, state.max_seq, state.epoch_start = row[1], row[2], row[3]
                state.pending = {
                    r[0]
                    for r in self.conn.execute(
                        "SELECT seq FROM scores WHERE device_id = ? AND seq > ? AND seq <= ? AND received_at >= ?",
                        [device_id, state.committed, state.max_seq, state.epoch_start],
                    )
                }
                state.lost = {
                    r[0]: r[1]
                    for r in self.conn.execute(
                        "SELECT first_seq, last_seq FROM seq_gaps WHERE device_id = ? AND state = 'lost' "
                        "AND last_seq > ? AND detected_at >= ?",
                        [device_id, state.committed, state.epoch_start],
                    )
                }
            self.seqs[device_id] = state
        if site:
            state.site = site
        return state

    def all_watermarks(self) -> dict[str, tuple[str, int]]:
        """Every known device's (site, committed seq), for the watermark heartbeat."""
        rows = self.conn.execute("SELECT device_id, site FROM devices WHERE site IS NOT NULL").fetchall()
        return {device_id: (site, self._seq(device_id, site).committed) for device_id, site in rows}

    def _ensure_device(self, device_id: str, site: str | None) -> None:
        self.conn.execute("INSERT OR IGNORE INTO devices (device_id, site) VALUES (?, ?)", [device_id, site])

    # ---------------------------------------------------------------- batches

    def process(self, batch: list[Incoming], now: float | None = None) -> BatchResult:
        """Classify and commit a batch. Raises sqlite3.Error (nothing committed, state restored) on failure."""
        now = time.time() if now is None else now
        crop_max = self.config.storage.crop_max_bytes
        for m in batch:
            m.received_at = m.received_at or now
        check = self.is_registered if self.registered is not None else None
        classified = [classify(m, crop_max_bytes=crop_max, is_registered=check) for m in batch]
        snapshot = copy.deepcopy(self.seqs), dict(self.anchors)
        result = BatchResult()
        written: list[Path] = []
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self._store_scores([c for c in classified if c.kind == "score"], now, result)
            for c in classified:
                if c.kind == "status":
                    self._store_status(c, now)
                    result.statuses += 1
                elif c.kind == "crop":
                    if self._store_crop(c, now, written):
                        result.crops += 1
                elif c.kind == "quarantine":
                    self.quarantine(c.incoming, c.reason or "invalid", c.device_id, now)
                    result.quarantined += 1
                    result.reasons.append(c.reason or "invalid")
            self.conn.execute("COMMIT")
        except BaseException:
            rollback(self.conn)
            self.seqs, self.anchors = snapshot
            for path in written:
                path.unlink(missing_ok=True)
            raise
        result.acks = [(m.mid, m.qos, m.generation) for m in batch if m.qos > 0]
        return result

    def _store_scores(self, items: list[Classified], now: float, result: BatchResult) -> None:
        if not items:
            return
        unique: dict[str, Classified] = {}
        for c in items:
            if c.row["msg_id"] in unique:
                result.duplicates += 1
                self._bump(c.device_id, "duplicates")
            else:
                unique[c.row["msg_id"]] = c
        existing: set[str] = set()
        ids = list(unique)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            q = f"SELECT msg_id FROM scores WHERE msg_id IN ({', '.join('?' for _ in chunk)})"
            existing.update(r[0] for r in self.conn.execute(q, chunk))
        new = [c for mid, c in unique.items() if mid not in existing]
        for mid in existing:
            result.duplicates += 1
            self._bump(unique[mid].device_id, "duplicates")
        # every device that sent scores gets its watermark re-published, even for pure duplicates
        for c in items:
            state = self._seq(c.device_id, c.site)
            result.watermarks[c.device_id] = (c.site, state.committed)
        if not new:
            return
        new.sort(key=lambda c: (c.device_id, c.row["seq"]))
        rows = [c.row for c in new]
        self._apply_anchors(rows, now)
        last_rowid = self.conn.execute("SELECT coalesce(max(rowid), 0) FROM scores").fetchone()[0]
        self.conn.executemany(_SCORE_INSERT, [_insert_values(r) for r in rows])
        # a candidate model's score of the same face (shadow mode) is kept apart: never in scores/rollups
        store_shadow(self.conn, [(c.message, c.row) for c in new if c.message and c.message.get("shadow")])
        for sql in _ROLLUP_ADD_NEW:
            self.conn.execute(sql, [last_rowid])
        per_device: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            per_device[r["device_id"]].append(r)
        for device_id, dev_rows in per_device.items():
            site = dev_rows[0]["site"]
            self._ensure_device(device_id, site)
            state = self._seq(device_id, site)
            for r in dev_rows:
                self._track_seq(device_id, state, r["seq"], now, r["received_at"])
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
        result.stored += len(rows)

    def _bump(self, device_id: str, column: str, by: int = 1) -> None:
        self._ensure_device(device_id, None)
        self.conn.execute(f"UPDATE devices SET {column} = {column} + ? WHERE device_id = ?", [by, device_id])

    def _track_seq(self, device_id: str, state: DeviceSeq, seq: int, now: float, received_at: float) -> None:
        if seq <= state.committed:
            if self._fill_gap(device_id, state, seq, now, "lost"):
                return  # a record given up on arrived after all
            if seq != 1:
                log.warning("device %s sent a new record with already-committed seq %d", device_id, seq)
                self._bump(device_id, "seq_anomalies")
                return
            # a new record numbered 1 after 1 was committed: the device started a fresh outbox
            log.warning(
                "device %s restarted its sequence at 1 (was at %d): new outbox?", device_id, state.max_seq
            )
            self._restart_numbering(device_id, state, now, received_at)
        if seq in state.pending:
            log.warning("device %s sent two different records with seq %d", device_id, seq)
            self._bump(device_id, "seq_anomalies")
            return
        state.pending.add(seq)
        if seq > state.max_seq + 1:
            first, last = state.max_seq + 1, seq - 1
            size = last - first + 1
            self.conn.execute(
                "INSERT INTO seq_gaps (device_id, first_seq, last_seq, size, detected_at) VALUES (?, ?, ?, ?, ?)",
                [device_id, first, last, size, now],
            )
            self.conn.execute(
                "UPDATE devices SET gaps_total = gaps_total + 1, missing_open = missing_open + ? WHERE device_id = ?",
                [size, device_id],
            )
        elif seq < state.max_seq:
            self._fill_gap(device_id, state, seq, now, "open")
        state.max_seq = max(state.max_seq, seq)

    def _restart_numbering(self, device_id: str, state: DeviceSeq, now: float, received_at: float) -> None:
        """A new epoch: what was open of the old numbering can no longer arrive, so it counts as lost."""
        self.conn.execute(
            "UPDATE devices SET seq_resets = seq_resets + 1, seq_epoch_start = ?, lost_total = lost_total + "
            "missing_open, missing_open = 0 WHERE device_id = ?",
            [received_at, device_id],
        )
        self.conn.execute(
            "UPDATE seq_gaps SET state = 'lost', closed_at = ? WHERE device_id = ? AND state = 'open'",
            [now, device_id],
        )
        state.committed, state.max_seq, state.pending, state.lost = 0, 0, set(), {}
        state.epoch_start = received_at

    def _fill_gap(self, device_id: str, state: DeviceSeq, seq: int, now: float, gap_state: str) -> bool:
        row = self.conn.execute(
            "SELECT id, size, filled FROM seq_gaps WHERE device_id = ? AND state = ? AND first_seq <= ? "
            "AND last_seq >= ? AND detected_at >= ? ORDER BY id DESC LIMIT 1",
            [device_id, gap_state, seq, seq, state.epoch_start],
        ).fetchone()
        if row is None:
            return False
        gap_id, size, filled = row
        done = filled + 1 >= size
        self.conn.execute(
            "UPDATE seq_gaps SET filled = filled + 1, state = ?, closed_at = ? WHERE id = ?",
            ["filled" if done else gap_state, now if done else None, gap_id],
        )
        column = "missing_open" if gap_state == "open" else "lost_total"
        self.conn.execute(f"UPDATE devices SET {column} = {column} - 1 WHERE device_id = ?", [device_id])
        return True

    # ---------------------------------------------------------------- clock anchors

    def _anchor(self, device_id: str, boot_id: str) -> float | None:
        key = (device_id, boot_id)
        if key not in self.anchors:
            row = self.conn.execute(
                "SELECT offset_s FROM clock_anchors WHERE device_id = ? AND boot_id = ?", key
            ).fetchone()
            self.anchors[key] = row[0] if row else None
        return self.anchors[key]

    def _set_anchor(self, device_id: str, boot_id: str, offset: float, now: float) -> None:
        self.anchors[(device_id, boot_id)] = offset
        self.conn.execute(
            "INSERT INTO clock_anchors (device_id, boot_id, offset_s, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (device_id, boot_id) DO UPDATE SET offset_s = excluded.offset_s, updated_at = excluded.updated_at",
            [device_id, boot_id, offset, now],
        )

    def _apply_anchors(self, rows: list[dict[str, Any]], now: float) -> None:
        """Learn anchors from synchronized records; give unsynchronized ones the anchored time of their boot."""
        fresh: dict[tuple[str, str], float] = {}
        for r in rows:
            r["clock_corrected"] = 0
            if r["clock_synced"] and r["boot_id"]:
                fresh[(r["device_id"], r["boot_id"])] = r["t"] - r["monotonic_s"]
        for (device_id, boot_id), offset in fresh.items():
            self._set_anchor(device_id, boot_id, offset, now)
        for r in rows:
            if not r["clock_synced"] and r["boot_id"]:
                offset = self._anchor(r["device_id"], r["boot_id"])
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
        self.conn.execute("BEGIN IMMEDIATE")
        try:
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
            self.conn.execute("COMMIT")
        except BaseException:
            rollback(self.conn)
            raise
        log.info("re-anchored %d score time(s) from unsynchronized clocks", len(found))
        return len(found)

    def _store_status(self, c: Classified, now: float) -> None:
        msg = c.message
        device_id = c.device_id
        self._ensure_device(device_id, c.site)
        store_device_models(self.conn, device_id, msg)
        t = parse_time(msg["at"]).timestamp()
        clock = msg.get("clock")
        if clock and clock["synced"]:
            self._set_anchor(device_id, clock["boot_id"], t - clock["monotonic_s"], now)
        prev = self.conn.execute(
            "SELECT state, status_at, status_t, rejected_json, reason FROM devices WHERE device_id = ?",
            [device_id],
        ).fetchone()
        if prev and prev[1] == msg["at"] and prev[0] == msg["state"]:
            return  # the retained copy of a status already stored (re-sent after a reconnect)
        # A last will carries the time it was set (at connect), older than the statuses since: it still sets
        # the state, but reject counters only advance with newer statuses.
        newer = prev is None or prev[2] is None or t > prev[2]
        if newer and msg.get("rejected") is not None and prev and prev[3]:
            add_rejects(self.conn, device_id, t, reject_deltas(json.loads(prev[3]), msg["rejected"]))
        model = msg.get("model") or {}
        dump = lambda key: None if msg.get(key) is None else json.dumps(msg[key])  # noqa: E731
        changed = prev is None or prev[0] != msg["state"]
        self.conn.execute(
            "UPDATE devices SET status_t = max(coalesce(status_t, ?), ?), "
            "rejected_json = CASE WHEN ? THEN coalesce(?, rejected_json) ELSE rejected_json END, "
            "site = ?, state = ?, state_since = CASE WHEN ? THEN ? ELSE state_since END, "
            "reason = ?, status_at = ?, status_received_at = ?, last_seen = ?, queue_depth = ?, unconfirmed = ?, "
            "reported_last_seq = ?, software = ?, model_name = coalesce(?, model_name), "
            "model_version = coalesce(?, model_version), model_sha256 = coalesce(?, model_sha256), "
            "last_capture_at = coalesce(?, last_capture_at), inference_ms = ?, disk_free_bytes = ?, cpu_temp_c = ?, "
            "clock_synced = ?, frames_json = coalesce(?, frames_json), "
            "errors_json = ?, views_json = coalesce(?, views_json), storage_warning = ? WHERE device_id = ?",
            [
                t,
                t,
                newer,
                dump("rejected"),
                c.site,
                msg["state"],
                changed,
                t if newer else now,
                msg.get("reason"),
                msg["at"],
                now,
                now,
                msg.get("queue_depth"),
                msg.get("unconfirmed"),
                msg.get("last_seq"),
                msg.get("software"),
                model.get("name"),
                model.get("version"),
                model.get("sha256"),
                msg.get("last_capture_at"),
                msg.get("inference_ms"),
                msg.get("disk_free_bytes"),
                msg.get("cpu_temp_c"),
                None if not msg.get("clock") else int(msg["clock"]["synced"]),
                dump("frames"),
                dump("errors"),
                dump("views"),
                msg.get("storage_warning"),
                device_id,
            ],
        )
        last_logged = self.conn.execute(
            "SELECT max(t) FROM status_log WHERE device_id = ?", [device_id]
        ).fetchone()[0]
        news = changed or prev is None or prev[4] != msg.get("reason")
        if not news and last_logged is not None and abs(t - last_logged) < STATUS_LOG_EVERY_S:
            return
        self.conn.execute(
            "INSERT INTO status_log (device_id, at, t, received_at, state, reason, queue_depth, frames_json, "
            "rejected_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                device_id,
                msg["at"],
                t,
                now,
                msg["state"],
                msg.get("reason"),
                msg.get("queue_depth"),
                dump("frames"),
                dump("rejected"),
            ],
        )

    def _store_crop(self, c: Classified, now: float, written: list[Path]) -> bool:
        if self.config.storage.crops_max_total_mb <= 0:
            return False
        msg_id = c.extra["msg_id"]
        folder = self.config.storage.crops_dir / c.device_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{msg_id}.jpg"
        tmp = path.with_suffix(".partial")
        with open(tmp, "wb") as f:
            f.write(c.incoming.payload)
        os.replace(tmp, path)
        written.append(path)
        self.conn.execute(
            "INSERT OR REPLACE INTO crops (msg_id, device_id, received_at, size, path) VALUES (?, ?, ?, ?, ?)",
            [
                msg_id,
                c.device_id,
                now,
                len(c.incoming.payload),
                str(path.relative_to(self.config.storage.state_dir)),
            ],
        )
        return True

    def quarantine_alone(self, item: Incoming, reason: str, now: float) -> BatchResult:
        """Quarantine one message in its own transaction (when storing it failed for an unexpected reason)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.quarantine(item, reason, None, now)
            self.conn.execute("COMMIT")
        except BaseException:
            rollback(self.conn)
            raise
        return BatchResult(
            acks=[(item.mid, item.qos, item.generation)] if item.qos else [], quarantined=1, reasons=[reason]
        )

    def quarantine(self, item: Incoming, reason: str, device_id: str | None, now: float) -> None:
        """Keep the evidence: topic, reason, the first bytes of the payload; repeats only counted."""
        cap = self.config.storage.quarantine_payload_bytes
        digest = hashlib.sha1(item.payload).hexdigest()
        self.conn.execute(
            "INSERT INTO quarantine (received_at, last_received_at, topic, device_id, reason, payload, payload_size, "
            "payload_sha1) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (topic, payload_sha1) DO UPDATE SET "
            "count = count + 1, last_received_at = excluded.last_received_at",
            [
                now,
                now,
                item.topic[:1024],
                device_id,
                reason[:2000],
                item.payload[:cap],
                len(item.payload),
                digest,
            ],
        )

    # ---------------------------------------------------------------- maintenance (same thread)

    def expire_gaps(self, now: float) -> dict[str, tuple[str, int]]:
        """Give up on gaps older than ingest.gap_timeout_s: mark them lost, move watermarks past them."""
        timeout = self.config.ingest.gap_timeout_s
        rows = self.conn.execute(
            "SELECT id, device_id, first_seq, last_seq, size - filled FROM seq_gaps WHERE state = 'open' "
            "AND detected_at < ?",
            [now - timeout],
        ).fetchall()
        if not rows:
            return {}
        moved = {}
        snapshot = copy.deepcopy(self.seqs)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for gap_id, device_id, first, last, missing in rows:
                log.warning(
                    "device %s: seq %d-%d still missing after %.0f s: counted as lost",
                    device_id,
                    first,
                    last,
                    timeout,
                )
                self.conn.execute(
                    "UPDATE seq_gaps SET state = 'lost', closed_at = ? WHERE id = ?", [now, gap_id]
                )
                self.conn.execute(
                    "UPDATE devices SET missing_open = missing_open - ?, lost_total = lost_total + ? WHERE device_id = ?",
                    [missing, missing, device_id],
                )
                state = self._seq(device_id, None)
                state.lost[first] = last
                state.advance()
                self.conn.execute(
                    "UPDATE devices SET committed_seq = ? WHERE device_id = ?", [state.committed, device_id]
                )
                moved[device_id] = (state.site, state.committed)
            self.conn.execute("COMMIT")
        except BaseException:
            rollback(self.conn)
            self.seqs = snapshot
            raise
        return moved

    def apply_retention(self, now: float) -> dict[str, int]:
        """Delete raw scores, quarantine and status history past their retention; trim crops to the cap."""
        storage = self.config.storage
        deleted = {"scores": 0, "quarantine": 0, "status_log": 0, "crops": 0}
        if storage.raw_retention_days:
            cutoff = now - storage.raw_retention_days * 86400
            deleted["scores"] = self._delete_chunked("scores", "t < ?", cutoff)
        if storage.quarantine_retention_days:
            cutoff = now - storage.quarantine_retention_days * 86400
            deleted["quarantine"] = self._delete_chunked("quarantine", "last_received_at < ?", cutoff)
            deleted["status_log"] = self._delete_chunked("status_log", "t < ?", cutoff)
        cap = storage.crops_max_total_mb * 1024 * 1024
        total = self.conn.execute("SELECT coalesce(sum(size), 0) FROM crops").fetchone()[0]
        while total > cap:
            rows = self.conn.execute(
                "SELECT msg_id, size, path FROM crops ORDER BY received_at LIMIT 200"
            ).fetchall()
            if not rows:
                break
            for msg_id, size, path in rows:
                (storage.state_dir / path).unlink(missing_ok=True)
                self.conn.execute("DELETE FROM crops WHERE msg_id = ?", [msg_id])
                total -= size
                deleted["crops"] += 1
                if total <= cap:
                    break
        return deleted

    def _delete_chunked(self, table: str, where: str, value: float) -> int:
        total = 0
        while True:
            n = self.conn.execute(
                f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {where} LIMIT 5000)",
                [value],
            ).rowcount
            total += n
            if n < 5000:
                return total
