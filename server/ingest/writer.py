"""The writer thread: drains the inbox in batches, commits, then acknowledges and publishes watermarks.

Order per batch (this order is the no-loss guarantee): commit -> PUBACK each message -> publish each
device's retained ``amgs.ack/1`` watermark. A failed commit (disk full, database locked, I/O error)
acknowledges nothing: the batch is retried after ``ingest.retry_backoff_s`` and ``/healthz`` reports
the error meanwhile. Maintenance (gap expiry, clock re-anchoring, retention, crop cap) runs in this thread too, so the
collector has exactly one writer of the ingest tables.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from amgs.contract import Ack, ack_topic, utc_now
from amgs.server.storage.db import CollectorDB

from .incoming import Incoming
from .store import BatchResult, Ingestor

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    """Counters for /metrics and /healthz (written by one thread each; read anywhere)."""

    started_at: float = field(default_factory=time.time)
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    conflicting: int = 0  # same msg_id, different content (quarantined, also counted in quarantined)
    quarantined: int = 0
    statuses: int = 0
    crops: int = 0
    unsynced: int = 0
    batches: int = 0
    commit_errors: int = 0
    last_batch_size: int = 0
    last_commit_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    quarantine_reasons: Counter = field(default_factory=Counter)
    _recent: deque = field(default_factory=lambda: deque(maxlen=600))  # (time, stored) per batch

    def add(self, r: BatchResult, now: float) -> None:
        self.stored += r.stored
        self.duplicates += r.duplicates
        self.conflicting += r.conflicts
        self.quarantined += r.quarantined
        self.statuses += r.statuses
        self.crops += r.crops
        self.unsynced += r.unsynced
        self.batches += 1
        self.last_commit_at = now
        self.quarantine_reasons.update(r.fields)
        self._recent.append((now, r.stored))

    def rate(self, window_s: float = 60.0, now: float | None = None) -> float:
        """Scores stored per second over the last ``window_s``."""
        now = time.time() if now is None else now
        stored = sum(n for t, n in list(self._recent) if t >= now - window_s)
        return stored / window_s


class Writer(threading.Thread):
    def __init__(self, db: CollectorDB, config, inbox: queue.Queue, mqtt, stats: IngestStats) -> None:
        super().__init__(name="amgs-writer", daemon=True)
        self.config = config
        self.inbox = inbox
        self.mqtt = mqtt
        self.stats = stats
        self.db = db
        self.stop_event = threading.Event()
        self.ingestor: Ingestor | None = None
        self.alive_at = time.time()
        self._next_gaps = 0.0
        self._next_retention = time.time() + 60
        self._next_heartbeat = 0.0
        self._heartbeat_generation = -1

    def _collect(self) -> list[Incoming]:
        try:
            first = self.inbox.get(timeout=0.5)
        except queue.Empty:
            return []
        batch = [first]
        limit = self.config.ingest.batch_max
        deadline = time.monotonic() + self.config.ingest.batch_wait_ms / 1000
        while len(batch) < limit:
            try:
                batch.append(self.inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.inbox.get(timeout=min(remaining, 0.005)))
            except queue.Empty:
                continue
        return batch

    def run(self) -> None:
        self.ingestor = Ingestor(self.db, self.config)
        pending: list[Incoming] = []
        while not self.stop_event.is_set():
            self.alive_at = time.time()
            if not pending:
                pending = self._collect()
            if pending:
                if self._commit(pending):
                    pending = []
                else:
                    self.stop_event.wait(self.config.ingest.retry_backoff_s)
            self._maintain()

    def _commit(self, batch: list[Incoming]) -> bool:
        """Store, then acknowledge. False = a storage failure: nothing acknowledged, retry the batch later."""
        now = time.time()
        try:
            result = self.ingestor.process(batch, now)
        except (sqlite3.Error, OSError) as e:
            self._storage_failed(len(batch), e, now)
            return False
        except Exception:  # a bug on some message: keep the others flowing, keep the evidence
            log.exception(
                "storing a batch of %d failed unexpectedly; storing its messages one by one", len(batch)
            )
            return all(self._commit_alone(m, now) for m in batch)
        self._done(result, len(batch), now)
        return True

    def _commit_alone(self, item: Incoming, now: float) -> bool:
        try:
            result = self.ingestor.process([item], now)
        except (sqlite3.Error, OSError) as e:
            self._storage_failed(1, e, now)
            return False
        except Exception as e:
            log.exception("message on %s cannot be stored: quarantined", item.topic)
            try:
                result = self.ingestor.quarantine_alone(
                    item, f"internal error while storing: {e!r}"[:500], now
                )
            except (sqlite3.Error, OSError) as err:
                self._storage_failed(1, err, now)
                return False
        self._done(result, 1, now)
        return True

    def _storage_failed(self, n: int, error: Exception, now: float) -> None:
        self.stats.commit_errors += 1
        self.stats.last_error = f"cannot commit {n} messages: {error} (they stay unacknowledged; retrying)"
        self.stats.last_error_at = now
        log.error("%s", self.stats.last_error)

    def _done(self, result: BatchResult, n: int, now: float) -> None:
        self.stats.last_batch_size = n
        self.stats.add(result, now)
        self.stats.last_error = None
        self.mqtt.ack_many(result.acks)
        self.publish_watermarks(result.watermarks)

    def publish_watermarks(self, watermarks: dict[str, tuple[str, int]]) -> None:
        at = utc_now()
        for device_id, (site, committed) in watermarks.items():
            if not site:
                continue
            ack = Ack.build(device_id=device_id, committed_seq=committed, at=at)
            self.mqtt.publish(ack_topic(site, device_id), ack.encode(), qos=1, retain=True)

    def _maintain(self) -> None:
        now = time.time()
        try:
            self._heartbeat(now)
            if now >= self._next_gaps:
                self._next_gaps = now + min(60.0, max(1.0, self.config.ingest.gap_timeout_s / 10))
                self.publish_watermarks(self.ingestor.expire_gaps(now))
                self.ingestor.reanchor(now)
                self.ingestor.refresh_registered()
            if now >= self._next_retention:
                self._next_retention = now + 3600
                deleted = self.ingestor.apply_retention(now)
                if any(deleted.values()):
                    log.info("retention: deleted %s", deleted)
        except sqlite3.Error as e:
            self.stats.last_error = f"maintenance failed: {e}"
            self.stats.last_error_at = now
            log.error("%s", self.stats.last_error)

    def _heartbeat(self, now: float) -> None:
        """Re-publish every device's watermark periodically and right after each (re)connect.

        Devices receive these as live (not retained-on-subscribe) messages, their sign that the collector
        is subscribed now; before that they hold their scores (docs/contract.md, delivery guarantees)."""
        if not self.mqtt.connected.is_set():
            return
        if now < self._next_heartbeat and self.mqtt.generation == self._heartbeat_generation:
            return
        self._next_heartbeat = now + self.config.ingest.ack_heartbeat_s
        self._heartbeat_generation = self.mqtt.generation
        self.publish_watermarks(self.ingestor.all_watermarks())

    def stop(self) -> None:
        self.stop_event.set()
