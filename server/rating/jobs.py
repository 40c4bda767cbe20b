"""The rating pool's periodic work in the collector: sample the last complete days into the pool, retire
items nobody rated in time, copy rated faces into ``backups/rating/`` (hourly; a failing pass is logged
and retried next time)."""

from __future__ import annotations

import logging

from amgs.server.jobs import PeriodicJob

from .pool import expire_pool, fill_pool, mirror_rated

log = logging.getLogger(__name__)

POOL_EVERY_S = 3600.0


def pool_pass(ctx) -> dict:
    conn = ctx.db.local().conn
    result = fill_pool(conn, ctx.config)
    result["expired"] = expire_pool(conn, ctx.config)
    result["mirrored"] = mirror_rated(conn, ctx.config)
    if result["added"] or result["expired"]:
        log.info(
            "rating pool: %d items added from %d day(s), %d expired",
            result["added"],
            result["days"],
            result["expired"],
        )
    return result


def periodic_jobs(config) -> list[PeriodicJob]:
    if not config.rating.enabled:
        return []
    return [PeriodicJob("rating-pool", POOL_EVERY_S, pool_pass, first_delay_s=30)]
