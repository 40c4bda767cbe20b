"""The durable outbox: every score is committed here (SQLite, WAL, fsync) before it is published.

Sequence numbers are assigned inside the same transaction that stores the record and the replay
cursors of the frames it came from, so after a power cut the device neither reuses a number nor
scores the same frame twice. Records leave the outbox only when delivery is confirmed (collector
watermark or broker PUBACK, see ``delivery.py``). One connection per thread.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amgs.contract import Score, ScoreDraft, decode
from amgs.sqlite_tx import write_transaction


def _numbered(record: ScoreDraft | dict[str, Any], seq: int) -> Score:
    if isinstance(record, ScoreDraft):
        return record.numbered(seq)
    return Score.check({"schema": Score.SCHEMA, **record, "seq": seq})


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    msg_id TEXT NOT NULL UNIQUE,
    payload BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Pending:
    seq: int
    msg_id: str
    payload: bytes


class Outbox:
    def __init__(self, path: str | Path, max_records: int = 1_000_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_records = max_records
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a committed score survives a power cut
        self.db.executescript(_SCHEMA)

    # ------------------------------------------------------------------ meta

    def _meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def _set_meta(self, key: str, value: Any) -> None:
        self.db.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, str(value)),
        )

    def last_seq(self) -> int:
        return int(self._meta("last_seq", "0") or 0)

    def cursor(self, source: str) -> str | None:
        return self._meta(f"cursor:{source}")

    def dropped(self) -> int:
        """Scores deleted unconfirmed because the outbox cap was reached (status reports it)."""
        return int(self._meta("dropped", "0") or 0)

    # ------------------------------------------------------------------ writing

    def commit(
        self, records: list[ScoreDraft | dict[str, Any]], cursors: dict[str, str] | None = None
    ) -> list[int]:
        """Give each record the next ``seq``, validate and store it, and save cursors, atomically."""
        seqs = []
        now = time.time()
        with write_transaction(self.db):  # all or nothing: on failure the numbers are given out again
            seq = self.last_seq()
            for record in records:
                seq += 1
                score = _numbered(record, seq)
                self.db.execute(
                    "INSERT INTO outbox(seq, msg_id, payload, created_at) VALUES(?, ?, ?, ?)",
                    (seq, score.msg_id, score.encode(), now),
                )
                seqs.append(seq)
            if records:
                self._set_meta("last_seq", seq)
            for name, position in (cursors or {}).items():
                self._set_meta(f"cursor:{name}", position)
            self._enforce_cap()
        for record, n in zip(records, seqs, strict=True):
            if isinstance(record, dict):
                record["seq"] = n  # only once committed: a failed commit leaves the records unnumbered
        return seqs

    def _enforce_cap(self) -> None:
        over = self.count() - self.max_records
        if over > 0:
            self.db.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", (over,)
            )
            self._set_meta("dropped", self.dropped() + over)

    def renumber_after(self, seq: int) -> int:
        """Continue numbering after ``seq``: the collector has seen higher numbers than this outbox ever
        gave out, so the state directory was reset; re-used numbers would be taken for duplicates."""
        with write_transaction(self.db):
            rows = self.db.execute("SELECT seq, payload FROM outbox ORDER BY seq").fetchall()
            for i, (old, payload) in enumerate(rows, start=1):
                score = Score.check({**decode(bytes(payload)), "seq": seq + i})
                self.db.execute(
                    "UPDATE outbox SET seq = ?, payload = ? WHERE seq = ?", (seq + i, score.encode(), old)
                )
            self._set_meta("last_seq", seq + len(rows))
        return len(rows)

    def delete_upto(self, seq: int) -> int:
        """Collector watermark: everything at or below ``seq`` is stored end to end."""
        with write_transaction(self.db):  # takes the write lock up front: waits instead of BUSY_SNAPSHOT
            n = self.db.execute("DELETE FROM outbox WHERE seq <= ?", (seq,)).rowcount
        return n

    def delete(self, seqs: Iterable[int]) -> int:
        """Broker mode: these records have their PUBACK."""
        seqs = list(seqs)
        if not seqs:
            return 0
        n = 0
        with write_transaction(self.db):
            for i in range(0, len(seqs), 500):
                chunk = seqs[i : i + 500]
                n += self.db.execute(
                    f"DELETE FROM outbox WHERE seq IN ({','.join('?' * len(chunk))})", chunk
                ).rowcount
        return n

    # ------------------------------------------------------------------ reading

    def pending(self, after_seq: int = 0, limit: int = 500) -> list[Pending]:
        rows = self.db.execute(
            "SELECT seq, msg_id, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        ).fetchall()
        return [Pending(int(s), m, bytes(p)) for s, m, p in rows]

    def get(self, seq: int) -> Pending | None:
        row = self.db.execute("SELECT seq, msg_id, payload FROM outbox WHERE seq = ?", (seq,)).fetchone()
        return Pending(int(row[0]), row[1], bytes(row[2])) if row else None

    def count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def first_seq(self) -> int | None:
        row = self.db.execute("SELECT min(seq) FROM outbox").fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def close(self) -> None:
        self.db.close()
