"""The alert engine's periodic work in the collector.

:func:`periodic_jobs` gives the collector (``amgs.server.service``) its two alert jobs: rule evaluation
and notification delivery.
"""

from __future__ import annotations

from amgs.server.jobs import PeriodicJob

from .service import AlertRunner, mqtt_params


def periodic_jobs(config) -> list[PeriodicJob]:
    holder: dict[str, AlertRunner] = {}

    def runner(ctx) -> AlertRunner:
        """One runner per collector, sharing the dashboard's engine (and its clock) when HTTP runs."""
        if "r" not in holder:
            state = getattr(ctx.app, "state", None)
            engine = getattr(state, "alert_engine", None)
            mqtt = mqtt_params(config.mqtt, config.notify.mqtt) if config.notify.mqtt.enabled else None
            holder["r"] = AlertRunner(
                ctx.db.local,
                config.alerts,
                config.notify,
                mqtt,
                engine=engine,
                rating=getattr(config, "rating", None),
            )
            if state is not None:
                state.alert_runner = holder["r"]
        return holder["r"]

    jobs = [
        PeriodicJob("alert-delivery", config.notify.deliver_every_s, lambda ctx: runner(ctx).deliver_once())
    ]
    if config.alerts.enabled:
        jobs.insert(
            0,
            PeriodicJob(
                "alert-rules",
                config.alerts.evaluate_every_s,
                lambda ctx: runner(ctx).evaluate_once(),
                first_delay_s=2,
            ),
        )
    return jobs
