"""Per-device sequence numbers: gaps, the committed watermark, restarts, and jumps no device makes.

Each device numbers its records +1 from 1 (``seq``). The watermark (``committed_seq``) is the highest
``seq`` such that every ``seq`` up to it is stored. A ``seq`` above ``max_seq + 1`` opens a gap
(``seq_gaps``), re-sent records fill it, a gap still open after ``ingest.gap_timeout_s`` is declared
lost and the watermark moves past it. A new record numbered 1 after 1 was committed means a fresh
outbox: a new epoch. A record more than ``ingest.max_seq_jump`` above the device's highest ``seq`` is
refused (:meth:`Sequences.jump_problem`): a device bug or a forged record must not declare billions of
scores missing and, once they "expire", move the watermark.

The in-memory state (:class:`DeviceSeq` per device) is rolled back with a failed transaction.
"""

from __future__ import annotations

import copy
import logging
import sqlite3
from dataclasses import dataclass, field

from amgs.sqlite_tx import write_transaction

log = logging.getLogger(__name__)


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


class Sequences:
    """Every device's :class:`DeviceSeq`, loaded from the database on first use."""

    def __init__(self, conn: sqlite3.Connection, max_jump: int) -> None:
        self.conn = conn
        self.max_jump = max_jump
        self.devices: dict[str, DeviceSeq] = {}

    def snapshot(self) -> dict[str, DeviceSeq]:
        return copy.deepcopy(self.devices)

    def restore(self, snapshot: dict[str, DeviceSeq]) -> None:
        self.devices = snapshot

    def get(self, device_id: str, site: str | None) -> DeviceSeq:
        state = self.devices.get(device_id)
        if state is None:
            state = self._load(device_id, site)
            self.devices[device_id] = state
        if site:
            state.site = site
        return state

    def _load(self, device_id: str, site: str | None) -> DeviceSeq:
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
        return state

    def all_watermarks(self) -> dict[str, tuple[str, int]]:
        """Every known device's (site, committed seq), for the watermark heartbeat."""
        rows = self.conn.execute("SELECT device_id, site FROM devices WHERE site IS NOT NULL").fetchall()
        return {device_id: (site, self.get(device_id, site).committed) for device_id, site in rows}

    # ---------------------------------------------------------------- per record

    def jump_problem(self, highest: int, seq: int) -> str | None:
        """Why ``seq`` is refused when the device's highest so far is ``highest`` (None: accepted)."""
        if seq - highest <= self.max_jump:
            return None
        return (
            f"{seq} jumps {seq - highest} past this device's highest seq {highest} (more than "
            f"ingest.max_seq_jump = {self.max_jump}): a device bug or a forged record, not missing scores"
        )

    def track(self, device_id: str, state: DeviceSeq, seq: int, now: float, received_at: float) -> None:
        """Account for one newly stored record."""
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

    def _bump(self, device_id: str, column: str) -> None:
        self.conn.execute(f"UPDATE devices SET {column} = {column} + 1 WHERE device_id = ?", [device_id])

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

    # ---------------------------------------------------------------- maintenance (writer thread)

    def expire_gaps(self, now: float, timeout: float) -> dict[str, tuple[str, int]]:
        """Give up on gaps older than ``timeout``: mark them lost, move watermarks past them."""
        rows = self.conn.execute(
            "SELECT id, device_id, first_seq, last_seq, size - filled FROM seq_gaps WHERE state = 'open' "
            "AND detected_at < ?",
            [now - timeout],
        ).fetchall()
        if not rows:
            return {}
        moved = {}
        snapshot = self.snapshot()
        try:
            with write_transaction(self.conn):
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
                        "UPDATE devices SET missing_open = missing_open - ?, lost_total = lost_total + ? "
                        "WHERE device_id = ?",
                        [missing, missing, device_id],
                    )
                    state = self.get(device_id, None)
                    state.lost[first] = last
                    state.advance()
                    self.conn.execute(
                        "UPDATE devices SET committed_seq = ? WHERE device_id = ?",
                        [state.committed, device_id],
                    )
                    moved[device_id] = (state.site, state.committed)
        except BaseException:
            self.restore(snapshot)
            raise
        return moved
