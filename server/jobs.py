"""Periodic work the collector runs beside ingest (alert rules, notification delivery, crop requests, backups).

A job runs in its own thread every ``every_s`` seconds; one that raises is logged and run again at its
next time, it never stops the collector::

    def evaluate(ctx: JobContext) -> None:
        conn = ctx.db.local()                                # this thread's sqlite-utils Database
        ctx.publish(topic, payload_bytes, qos=1, retain=True)

    PeriodicJob("alerts", every_s=30, run=evaluate)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from amgs.server.config import ServerConfig
    from amgs.server.ingest.writer import IngestStats
    from amgs.server.storage.db import CollectorDB


@dataclass
class JobContext:
    config: ServerConfig
    db: CollectorDB
    publish: Callable[..., None]  # publish(topic, payload: bytes, qos=1, retain=False)
    stats: IngestStats
    app: object | None = None  # the FastAPI app (app.state is shared with the HTTP side)


@dataclass
class PeriodicJob:
    name: str
    every_s: float
    run: Callable[[JobContext], None]
    first_delay_s: float = 0.0
