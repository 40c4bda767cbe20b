"""Fetching face crops from devices: crops stay on the device until the collector asks for them.

A score with ``has_crop`` says its device keeps a JPEG of the face. Every ``ingest.crop_request_every_s``
this job asks each device (``amgs.command/1`` ``send_crops`` on its command topic) for the crops of the
``ingest.crops_per_cage`` most recent such scores per cage that are not stored yet; the device answers
on ``crop/{msg_id}`` (QoS 0) and the writer stores them. A crop asked for is not asked again for 10 min.
"""

from __future__ import annotations

import time
from collections import defaultdict

from amgs.contract import command_topic, encode, utc_now

REASK_AFTER_S = 600.0


def missing_crops(conn, per_cage: int, since: float) -> dict[tuple[str, str], list[str]]:
    """(site, device) -> msg_ids of recent scores whose crop the device has and we have not."""
    rows = conn.execute(
        "SELECT r.site, r.device_id, r.msg_id FROM (SELECT site, device_id, msg_id, row_number() OVER "
        "(PARTITION BY cage_id ORDER BY t DESC) AS k FROM scores WHERE t >= ? AND has_crop = 1) r "
        "LEFT JOIN crops c ON c.msg_id = r.msg_id WHERE r.k <= ? AND c.msg_id IS NULL",
        [since, per_cage],
    ).fetchall()
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    for site, device_id, msg_id in rows:
        out[(site, device_id)].append(msg_id)
    return out


def send_crops_command(msg_ids: list[str]) -> bytes:
    return encode(
        {"schema": "amgs.command/1", "command": "send_crops", "msg_ids": msg_ids[:500], "at": utc_now()}
    )


class CropRequester:
    """The periodic job (see service.builtin_jobs); remembers what it asked for."""

    def __init__(self) -> None:
        self.asked: dict[str, float] = {}

    def __call__(self, ctx) -> None:
        now = time.time()
        self.asked = {m: t for m, t in self.asked.items() if now - t < REASK_AFTER_S}
        per_cage = ctx.config.ingest.crops_per_cage
        for (site, device_id), msg_ids in missing_crops(ctx.db.local().conn, per_cage, now - 86400).items():
            fresh = [m for m in msg_ids if m not in self.asked]
            if fresh:
                ctx.publish(command_topic(site, device_id), send_crops_command(fresh), qos=1, retain=False)
                self.asked.update(dict.fromkeys(fresh, now))
