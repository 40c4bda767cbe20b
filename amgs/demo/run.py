"""``amgs demo``: the whole appliance on one machine, on embedded defaults, with a SYNTHETIC study.

Starts a broker (Mosquitto when installed, else the embedded amqtt), the collector with its dashboard
and alert jobs, and four simulated devices watching seven cages. The study (8 h baseline, then 52 h
after surgery) is replayed in accelerated time ending at "now"; after that time runs normally until
Ctrl-C. The alert engine and the dashboard follow the simulated clock, so a cage whose grimace stays
high (the laparotomy animal with a complication) raises a sustained-pain alert.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click

from amgs.cli_options import load_scorer
from amgs.contract import format_time

log = logging.getLogger(__name__)
SITE = "demo-lab"
BASELINE_H = 8.0
AFTER_H = 52.0


class SimClock:
    """Simulated time: runs ``speed`` times faster from ``start`` until it meets the wall clock, then is it."""

    def __init__(self, start: float, speed: float) -> None:
        self.start, self.speed, self.wall0 = start, speed, time.time()

    def t(self) -> float:
        now = time.time()
        return min(now, self.start + (now - self.wall0) * self.speed)

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.t(), UTC)

    @property
    def caught_up(self) -> bool:
        return self.t() >= time.time() - 1e-3


def demo_config(workdir: Path, broker_port: int, http_port: int, speed: float = 1.0, protocol: str = "5"):
    """The embedded defaults: thresholds sized for 12 images per cage and hour (site settings, not cut-offs).
    Silence rules tolerate 15 wall-clock seconds of delivery lag at the replay ``speed``."""
    from amgs.server.config import parse_config

    quiet_min = max(120.0, speed * 15 / 60)

    return parse_config(
        {
            "mqtt": {
                "host": "127.0.0.1",
                "port": broker_port,
                "client_id": "amgs-demo-collector",
                "protocol": protocol,
            },
            "storage": {"state_dir": str(workdir / "collector"), "backup_before_migrate": False},
            "http": {"bind": "127.0.0.1", "port": http_port},
            "alerts": {
                "evaluate_every_s": 2,
                "renotify_after_min": 120,
                "resolve_after_min": 60,
                "pain": {"window_min": 120, "min_images": 12, "fraction_pain": 0.5, "mean_amgs": 0.6},
                "humane_endpoint": {
                    "window_min": 720,
                    "min_images": 72,
                    "fraction_pain": 0.9,
                    "mean_amgs": 0.85,
                },
                "baseline_rise": {"window_min": 120, "min_images": 12, "rise": 0.3, "baseline_hours": 6},
                "no_faces": {"after_min": quiet_min},
                "device_offline": {"after_min": max(15.0, quiet_min)},
            },
            "notify": {"deliver_every_s": 1, "retry_initial_s": 2},
            "web": {"title": "aMGS demo collector (SYNTHETIC data)"},
            # two SIMULATED raters score these (amgs/demo/rater.py); a third, human, rater may join at /rate
            "rating": {"per_cage_per_day": 12, "raters_per_item": 3, "alert": {"min_items": 20}},
        },
        "demo defaults",
    )


def register_study(conn, animals, surgery_t: float, start_t: float) -> None:
    from amgs.server.query import metadata

    from .study import CURVES

    at = lambda t: format_time(datetime.fromtimestamp(t, UTC))  # noqa: E731
    metadata.save(conn, "sites", {"site_id": SITE, "name": "Demo lab (synthetic)"})
    for room in sorted({a.room_id for a in animals}):
        metadata.save(
            conn, "rooms", {"room_id": room, "site_id": SITE, "name": room.replace("-", " ").title()}
        )
    for g in CURVES.values():
        metadata.save(conn, "groups", {"group_id": g.group_id, "name": g.name, "study": "demo (synthetic)"})
    for device in sorted({a.device_id for a in animals}):
        metadata.save(conn, "devices", {"device_id": device, "site": SITE})
    for a in animals:
        note = "complication: grimace does not resolve" if a.curve.decay_h > 100 else None
        metadata.save(
            conn, "cages", {"cage_id": a.cage_id, "site_id": SITE, "room_id": a.room_id, "name": a.cage_id}
        )
        metadata.save(
            conn,
            "animals",
            {
                "animal_id": a.animal_id,
                "cage_id": a.cage_id,
                "group_id": a.group_id,
                "strain": "C57BL/6J (synthetic)",
                "sex": "F",
                "coat": a.coat,
                "housing": "single",
                "notes": note,
            },
        )
        view = f"view{[b.cage_id for b in animals if b.device_id == a.device_id].index(a.cage_id) + 1}"
        metadata.save(
            conn,
            "assignments",
            {"device_id": a.device_id, "cage_id": a.cage_id, "view": view, "start": at(start_t)},
        )
        metadata.save(
            conn,
            "events",
            {
                "kind": "surgery",
                "at": at(surgery_t),
                "animal_id": a.animal_id,
                "cage_id": a.cage_id,
                "notes": "laparotomy" if a.group_id != "sham" else "sham",
            },
        )
        if a.group_id == "analgesic":
            for h in (0, 12, 24):
                metadata.save(
                    conn,
                    "events",
                    {
                        "kind": "analgesic",
                        "at": at(surgery_t + h * 3600),
                        "animal_id": a.animal_id,
                        "cage_id": a.cage_id,
                        "value": 0.1,
                        "unit": "mg/kg buprenorphine",
                    },
                )


class Demo:
    """Broker + collector + simulated devices; ``start()``, ``run(duration)``, ``stop()``."""

    def __init__(
        self,
        workdir: Path,
        scorer,
        *,
        port: int = 8080,
        replay_s: float = 120.0,
        scores: str = "auto",
        variants: int = 3,
        fresh: bool = True,
        broker: str = "mosquitto",
        echo: Callable[[str], None] = print,
    ) -> None:
        self.workdir, self.scorer, self.port, self.replay_s = Path(workdir), scorer, port, replay_s
        self.scores, self.variants, self.fresh, self.prefer, self.echo = scores, variants, fresh, broker, echo
        self.broker = self.collector = None
        self.devices: list = []
        self.seen_alerts: set[tuple[str, str]] = set()
        self.password = secrets.token_urlsafe(9)
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.collector.http_port}/"

    def start(self) -> Demo:
        from amgs.broker import LocalBroker
        from amgs.server.alerts.jobs import periodic_jobs as alert_jobs
        from amgs.server.config import ServerConfig  # noqa: F401 - config sections must import cleanly first
        from amgs.server.rating.jobs import periodic_jobs as rating_jobs
        from amgs.server.service import Collector
        from amgs.server.web.auth import add_user

        from .devices import SimDevice
        from .study import build_bank, study_animals

        # A fresh demo resets all three together: the broker's retained watermarks describe the old database,
        # and devices that met them would take themselves for reset and renumber (never confirmed after).
        for old in ("collector", "devices", "broker"):
            if self.fresh and (self.workdir / old).exists():
                shutil.rmtree(self.workdir / old)
        self.workdir.mkdir(parents=True, exist_ok=True)
        animals = study_animals()
        self.echo(
            f"rendering and scoring {9 * 3 * self.variants} SYNTHETIC faces with {self.scorer.manifest.name} ..."
        )
        bank = build_bank(self.scorer, {a.coat for a in animals}, variants=self.variants)
        use_model = self.scores == "model" or (self.scores == "auto" and bank.responsive)
        if use_model:
            self.echo(
                f"scores: the real model's scores of the rendered faces (r = {bank.correlation:.2f} with grimace level)"
            )
        else:
            self.echo(
                f"WARNING: model {bank.model['name']} {bank.model['version']} does not respond to the grimace level "
                f"(r = {bank.correlation:.2f}): scores are drawn from the study curve instead and carry the model "
                f"name '{'demo-study-curve'}'. Faces on the dashboard are still the rendered ones."
            )
        self.broker = LocalBroker(workdir=self.workdir / "broker", prefer=self.prefer).start()
        now = time.time()
        start_t = now - (BASELINE_H + AFTER_H) * 3600
        surgery_t = start_t + BASELINE_H * 3600
        self.clock = SimClock(start_t, (BASELINE_H + AFTER_H) * 3600 / max(1.0, self.replay_s))
        config = demo_config(
            self.workdir,
            self.broker.port,
            self.port,
            self.clock.speed,
            "5" if self.broker.kind == "mosquitto" else "3.1.1",
        )
        self.collector = Collector(config, jobs=alert_jobs(config) + rating_jobs(config))
        self.config, self.animals, self.surgery_t = config, animals, surgery_t
        self._next_rating = 0.0
        state = self.collector.app.state
        state.alert_engine.clock = self.clock
        state.clock = self.clock
        db = self.collector.db.local()
        register_study(db.conn, animals, surgery_t, start_t)
        add_user(db, "demo", self.password, "staff")
        self.collector.start()
        if not self.collector.mqtt.connected.wait(60):
            hint = (
                " (the embedded amqtt broker is a fallback: install mosquitto)"
                if self.broker.kind == "amqtt"
                else ""
            )
            raise click.ClickException(
                f"the collector could not connect to the {self.broker.kind} broker on port {self.broker.port}{hint}; "
                f"broker log: {self.broker.workdir}"
            )
        by_device: dict[str, list] = {}
        for a in animals:
            by_device.setdefault(a.device_id, []).append(a)
        self.devices = [
            SimDevice(
                d,
                SITE,
                group,
                bank,
                use_model,
                "127.0.0.1",
                self.broker.port,
                seed=i,
                surgery_t=surgery_t,
                start_t=start_t,
                state_dir=self.workdir / "devices" / d,
                clock=self.clock.t,
            )
            for i, (d, group) in enumerate(sorted(by_device.items()))
        ]
        self.echo(f"broker: {self.broker.kind} on 127.0.0.1:{self.broker.port}")
        self.echo(f"dashboard: {self.url}   (log in as demo / {self.password} to acknowledge alerts)")
        self.echo(
            f"replaying {BASELINE_H + AFTER_H:.0f} simulated hours in {self.replay_s:.0f} s, then real time"
        )
        return self

    def step(self) -> None:
        t = self.clock.t()
        for dev in self.devices:
            dev.advance(t)
        self._report_alerts()
        if self.clock.caught_up and time.monotonic() >= self._next_rating:
            self._next_rating = time.monotonic() + 300
            self.simulated_rating()

    def simulated_rating(self) -> int:
        """Sample the finished days into the rating pool and let the SIMULATED raters score them."""
        from amgs.server.rating.pool import fill_pool

        from .rater import simulate

        conn = self.collector.db.local().conn
        now = self.clock.t()
        fill_pool(conn, self.config, now=now)
        made = simulate(conn, self.config, self.animals, self.surgery_t, now)
        if made:
            self.echo(
                f"SIMULATED raters (a program, not people) scored {made} faces: {self.url}agreement; "
                f"score some yourself at {self.url}rate"
            )
        return made

    def _report_alerts(self) -> None:
        conn = self.collector.db.local().conn
        for alert_id, state, severity, message, updated in conn.execute(
            "SELECT alert_id, state, severity, message, updated_at FROM alerts ORDER BY updated_at"
        ):
            if (alert_id, state + severity) in self.seen_alerts:
                continue
            self.seen_alerts.add((alert_id, state + severity))
            tag = {
                "open": f"ALERT {severity.upper()}",
                "resolved": "resolved",
                "acknowledged": "acknowledged",
            }[state]
            self.echo(f"[{updated[:16].replace('T', ' ')} sim] {tag}: {message}")

    def run(self, duration: float | None = None) -> None:
        deadline = None if duration is None else time.monotonic() + duration
        while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
            self.step()
            self._stop.wait(0.25)

    def request_stop(self) -> None:
        """Ask :meth:`run` to return at its next step (safe from a signal handler: it only sets an event)."""
        self._stop.set()

    def stop(self) -> None:
        self.request_stop()
        stoppers = [threading.Thread(target=dev.stop) for dev in self.devices]  # each flushes for a few s
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(30)
        if self.collector is not None:
            self.collector.stop()
        if self.broker is not None:
            self.broker.stop()


@click.command("demo")
@click.option("--workdir", type=click.Path(path_type=Path), default=Path("var/demo"), show_default=True)
@click.option("--port", default=8080, show_default=True, help="Dashboard port (0 = any free port).")
@click.option(
    "--replay-seconds", default=120.0, show_default=True, help="Wall seconds for the 60 h study replay."
)
@click.option(
    "--duration", type=float, default=None, help="Stop after this many seconds (default: run until Ctrl-C)."
)
@click.option(
    "--scores",
    type=click.Choice(["auto", "model", "curve"]),
    default="auto",
    show_default=True,
    help="auto: the model's scores if it responds to grimace, else scores drawn from the study curve.",
)
@click.option("--variants", default=3, show_default=True, help="Rendered faces per coat and grimace level.")
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the previous demo (database, devices, broker) instead of starting fresh.",
)
@click.option(
    "--broker",
    type=click.Choice(["mosquitto", "amqtt"]),
    default="mosquitto",
    show_default=True,
    help="Mosquitto when installed (falls back to the embedded amqtt).",
)
@click.option(
    "--model", "model_path", type=click.Path(path_type=Path), default=None, help="Model (default: shipped)."
)
def cli(workdir, port, replay_seconds, duration, scores, variants, keep, broker, model_path) -> None:
    """Run the whole appliance on this machine with a SYNTHETIC study (broker, collector, dashboard, devices)."""
    logging.getLogger("amgs.server.alerts.engine").setLevel(logging.ERROR)  # the demo prints alerts itself
    demo = Demo(
        workdir,
        load_scorer(model_path),
        port=port,
        replay_s=replay_seconds,
        scores=scores,
        variants=variants,
        fresh=not keep,
        broker=broker,
        echo=lambda s: click.echo(s),
    )
    signalled: list[int] = []

    def on_signal(signum: int, _frame) -> None:
        # Ctrl-C / systemd stop while running: end the loop between steps, as the device agent and the
        # collector do. A KeyboardInterrupt raised mid-step could leave a lock or a transaction half done
        # and hang the shutdown.
        signalled.append(signum)
        demo.request_stop()

    try:
        demo.start()  # Ctrl-C while starting raises KeyboardInterrupt: nothing runs yet to finish
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            click.echo("press Ctrl-C to stop" if duration is None else f"running for {duration:g} s")
            demo.run(duration)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if signalled:
            click.echo("\nstopping ...")
    except KeyboardInterrupt:
        click.echo("\nstopping ...")
    finally:
        demo.stop()
    n = len({a for a, _ in demo.seen_alerts})
    click.echo(f"stopped cleanly; {n} alert(s) raised; data kept in {workdir / 'collector'} (SYNTHETIC)")
