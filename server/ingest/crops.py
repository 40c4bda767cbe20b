"""Face crops: asking devices for them and storing what they send.

Crops stay on the device until the collector asks for them. A score with ``has_crop`` says its device
keeps a JPEG of the face. Every ``ingest.crop_request_every_s``
this job asks each device (``amgs.command/1`` ``send_crops`` on its command topic) for the crops of the
``ingest.crops_per_cage`` most recent such scores per cage that are not stored yet; the device answers
on ``crop/{msg_id}`` (QoS 0) and the writer stores them (:func:`store_crop`) as
``state_dir/crops/{device}/{msg_id}.jpg``. A crop asked for is not asked again for 10 min.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import defaultdict
from pathlib import Path

from amgs.contract import Command, command_topic, utc_now

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
    return Command.build(command="send_crops", msg_ids=msg_ids[:500], at=utc_now()).encode()


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


def store_crop(
    conn: sqlite3.Connection,
    storage,
    device_id: str,
    msg_id: str,
    jpeg: bytes,
    now: float,
    written: list[Path],
) -> bool:
    """Write the JPEG (atomically: temporary file, then rename) and its ``crops`` row; False when crops are
    off. ``written`` collects the files, so a failed transaction can delete them again."""
    if storage.crops_max_total_mb <= 0:
        return False
    folder = storage.crops_dir / device_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{msg_id}.jpg"
    tmp = path.with_suffix(".partial")
    with open(tmp, "wb") as f:
        f.write(jpeg)
    os.replace(tmp, path)
    written.append(path)
    conn.execute(
        "INSERT OR REPLACE INTO crops (msg_id, device_id, received_at, size, path) VALUES (?, ?, ?, ?, ?)",
        [msg_id, device_id, now, len(jpeg), str(path.relative_to(storage.state_dir))],
    )
    return True
