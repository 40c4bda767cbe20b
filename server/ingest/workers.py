"""Several collector workers writing one database: the receiver kind by config, and shared sequence state.

One collector (``stream.engine = "mqtt"``) keeps each device's sequence state (watermark, pending seqs,
lost gaps) in memory, loaded once: it is the only writer. With many workers (``"nats"``) any worker may
store any device's scores, so a worker's memory goes stale the moment another commits. :class:`SharedIngestor`
therefore drops its per-device state before every batch and reloads it inside the batch's write transaction
(SQLite: ``BEGIN IMMEDIATE`` serialises the writers; the state read is the committed one). The watermark a
worker publishes is thus the one the shared database holds after its own commit: a worker that advanced a
device's watermark publishes it. Two workers' publishes can arrive out of order; devices keep the highest
watermark they saw, and every worker re-publishes the database's watermarks every ``ack_heartbeat_s``.
"""

from __future__ import annotations

import queue

from .receiver import ReceiverProcess
from .store import BatchResult, Ingestor
from .writer import Writer


class SharedIngestor(Ingestor):
    """An :class:`Ingestor` for one of several writers of the same database."""

    def _forget(self) -> None:
        self.sequences.devices = {}
        self.anchors.cache = {}

    def process(self, batch, now: float | None = None) -> BatchResult:
        self._forget()
        return super().process(batch, now)

    def all_watermarks(self) -> dict[str, tuple[str, int]]:
        self._forget()
        return super().all_watermarks()

    def expire_gaps(self, now: float) -> dict[str, tuple[str, int]]:
        self._forget()
        return super().expire_gaps(now)


class SharedWriter(Writer):
    """The writer thread with a :class:`SharedIngestor`."""

    ingestor_class = SharedIngestor


def receiver_for(config, inbox: queue.Queue, stats=None):
    """The receiver process; inside it, ``[stream] engine`` picks MQTT (one collector) or a JetStream worker."""
    if config.stream.engine == "nats":
        import nats  # noqa: F401  (the collector refuses to start without nats-py, rather than its receiver dying)
    return ReceiverProcess(config, inbox, stats)


def writer_for(db, config, inbox: queue.Queue, receiver, stats) -> Writer:
    """The single writer of a lone collector, or a writer that shares the database with other workers
    (always on PostgreSQL: another collector or ``amgs server`` command may write it at any time)."""
    if getattr(db, "dialect", "sqlite") == "postgresql":
        from .pg_ingest import PgIngestor

        return type("PgWriter", (Writer,), {"ingestor_class": PgIngestor})(db, config, inbox, receiver, stats)
    cls = SharedWriter if config.stream.engine != "mqtt" else Writer
    return cls(db, config, inbox, receiver, stats)
