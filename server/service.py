"""``amgs server run``: the collector process.

Processes: this one and its MQTT receiver (:mod:`amgs.server.ingest.receiver`: paho's network loop, callbacks
only enqueue). Threads here: one writer (all ingest writes), uvicorn (HTTP), the link to the receiver,
and one thread per periodic job. Shutdown (SIGTERM/SIGINT) stops intake, lets the writer commit and
acknowledge what it holds, then stops. Under systemd (``Type=notify``) it sends ``READY=1`` once the
database is migrated and HTTP listens, and ``WATCHDOG=1`` while the writer thread is alive.

Periodic jobs (:mod:`amgs.server.jobs`): the collector's own (crop requests, backups) and the alert
engine's (rule evaluation, notification delivery), imported plainly: a collector whose alert engine
cannot load refuses to start rather than run without alerts. Jobs may also be passed to
:class:`Collector` directly (``jobs=[...]``) or added with :meth:`Collector.add_job`.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time

import uvicorn

from amgs.sdnotify import Notifier
from amgs.server.http.app import create_app
from amgs.server.http.tls import check_https, scheme, uvicorn_config
from amgs.server.ingest.crops import CropRequester
from amgs.server.ingest.workers import receiver_for, writer_for
from amgs.server.ingest.writer import IngestStats
from amgs.server.storage.db import backup, open_database

from .alerts.jobs import periodic_jobs as alert_jobs
from .config import ServerConfig
from .jobs import JobContext, PeriodicJob
from .rating.jobs import periodic_jobs as rating_jobs

log = logging.getLogger(__name__)


def _backup_job(ctx: JobContext) -> None:
    storage = ctx.config.storage
    backup(ctx.db.local().conn, storage.backups_dir, "periodic", storage.backups_keep)


class ModelAssignmentPublisher:
    """Sends each changed model assignment to its device (retained), and all of them every 10 minutes
    (a broker that lost its retained messages in a restart gets them back)."""

    def __init__(self) -> None:
        self.last_all = 0.0

    def __call__(self, ctx: JobContext) -> None:
        import time

        from amgs.server.models.registry import publish_due

        everything = time.monotonic() - self.last_all > 600
        publish_due(ctx.db.local().conn, ctx.publish, republish_all=everything)
        if everything:
            self.last_all = time.monotonic()


def builtin_jobs(config: ServerConfig) -> list[PeriodicJob]:
    """The collector's own periodic work outside the writer (which does gap expiry and retention)."""
    jobs = [PeriodicJob("model-assignments", 2.0, ModelAssignmentPublisher(), 1.0)]
    if config.ingest.crop_request_every_s and config.ingest.crops_per_cage:
        jobs.append(PeriodicJob("crop-requests", config.ingest.crop_request_every_s, CropRequester(), 5.0))
    # PostgreSQL: periodic backups are the database's (every worker dumping would be N copies): schedule
    # `amgs server backup` (pg_dump) once, or use the institution's own tooling (docs/server.md, PostgreSQL)
    if config.storage.backup_every_h and not config.storage.url:
        every = config.storage.backup_every_h * 3600
        jobs.append(PeriodicJob("backup", every, _backup_job, first_delay_s=every))
    return jobs


def collector_jobs(config: ServerConfig) -> list[PeriodicJob]:
    """Everything ``amgs server run`` runs periodically: its own jobs, the alert engine's and the rating pool's."""
    return builtin_jobs(config) + alert_jobs(config) + rating_jobs(config)


class Collector:
    """Everything ``amgs server run`` starts, as one object tests can start and stop in-process."""

    def __init__(
        self, config: ServerConfig, jobs: list[PeriodicJob] | None = None, with_http: bool = True
    ) -> None:
        self.config = config
        if with_http:
            check_https(config.http)  # a certificate problem stops the start here, naming the file
        self.db = open_database(config)
        self.stats = IngestStats()
        self.inbox: queue.Queue = queue.Queue()
        self.mqtt = receiver_for(config, self.inbox, self.stats)  # [stream] engine: MQTT alone, or a worker
        self.writer = writer_for(self.db, config, self.inbox, self.mqtt, self.stats)
        self.jobs = list(jobs or [])
        self.with_http = with_http
        self.app = create_app(config, self.db, self) if with_http else None
        self.http: uvicorn.Server | None = None
        self.http_port: int | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.mqtt.publish(topic, payload, qos, retain)

    def add_job(self, job: PeriodicJob) -> None:
        self.jobs.append(job)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> Collector:
        self.writer.start()
        self.mqtt.start()
        if self.with_http:
            self._start_http()
        for job in self.jobs:
            t = threading.Thread(target=self._run_job, args=(job,), name=f"amgs-job-{job.name}", daemon=True)
            t.start()
            self._threads.append(t)
        log.info(
            "collector running: database %s, broker %s:%d, HTTP %s",
            self.db.path,
            self.config.mqtt.host,
            self.config.mqtt.port,
            f"{scheme(self.config.http)}://{self.config.http.bind}:{self.http_port}"
            if self.with_http
            else "off",
        )
        return self

    def _start_http(self) -> None:
        cfg = uvicorn_config(
            self.app, self.config.http, log_level="warning", access_log=False, lifespan="off"
        )
        self.http = uvicorn.Server(cfg)
        self.http.install_signal_handlers = lambda: None  # signals belong to the main thread's run loop
        t = threading.Thread(target=self.http.run, name="amgs-http", daemon=True)
        t.start()
        self._threads.append(t)
        deadline = time.monotonic() + 15
        while not self.http.started:
            if not t.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the HTTP server did not start on {self.config.http.bind}:{self.config.http.port} "
                    "(port in use? see the log above)"
                )
            time.sleep(0.02)
        self.http_port = self.http.servers[0].sockets[0].getsockname()[1]

    def _run_job(self, job: PeriodicJob) -> None:
        ctx = JobContext(self.config, self.db, self.publish, self.stats, self.app)
        if self._stop.wait(job.first_delay_s):
            return
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                job.run(ctx)
            except Exception:
                log.exception("periodic job %s failed; it runs again in %.0f s", job.name, job.every_s)
            self._stop.wait(max(0.0, job.every_s - (time.monotonic() - started)))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop intake, let the writer commit and acknowledge what it holds, then stop everything."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        while not self.inbox.empty() and self.writer.is_alive() and time.monotonic() < deadline:
            if self.stats.last_error:  # commits are failing: what is left stays unacknowledged at the broker
                break
            time.sleep(0.05)
        self.writer.stop()
        self.writer.join(max(0.1, deadline - time.monotonic()))
        self.mqtt.stop()
        if self.http is not None:
            self.http.should_exit = True
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))

    def run_forever(self) -> None:
        """Run until SIGTERM/SIGINT; notify systemd of readiness and feed its watchdog."""
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.start()
        systemd = Notifier()
        systemd.ready()
        while not stop.wait(systemd.watchdog_interval_s or 5.0):
            if self.writer.is_alive() and time.time() - self.writer.alive_at < 60:
                systemd.notify("WATCHDOG=1")
            else:
                log.error("writer thread is stuck or dead: withholding the watchdog so systemd restarts us")
        systemd.stopping()
        log.info("stopping: committing what is received, then closing")
        self.stop()
        systemd.close()


def run(config: ServerConfig) -> None:
    Collector(config, jobs=collector_jobs(config)).run_forever()
