"""The rating pool on disk and in the database: sample stored crops each day, keep blinded copies.

Every hour the collector (``jobs.py``) looks at the last ``rating.days_back`` complete local days and,
for each cage not yet sampled that day whose device has sent a score from after the day (so the day is
over in the data too: crops delivered late had their chance, and a replayed day is not cut short), draws
``per_cage_per_day`` of the scores whose crop it holds (``sampling.py``). For each pick it writes two files under
``state_dir/rating/``:

- ``*.src.jpg``: the crop's bytes as the device sent them (the training export uses these), and
- ``*.jpg``: the image raters see, decoded and re-encoded from pixels only: no EXIF, JPEG comment,
  ICC profile or the device's own quantization tables, resized onto a fixed square canvas so that
  neither metadata nor size nor encoder settings can tell one camera (or cage) from another.

The item row copies what the agreement needs from the score (model, P(pain), AU heads, cage, animal,
group, capture time, phase): the pool owns its copies, so the crop cap and raw-score retention never
take an item or its ratings away. An item nobody rated in ``unrated_expire_days`` leaves the pool
(files deleted, row kept as ``expired``); rated items are kept.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import os
import sqlite3
import time
from pathlib import Path

from PIL import Image, ImageOps

from amgs.contract import AU_KEYS

from .sampling import Candidate, is_light, local_day, local_day_bounds, sample_day

log = logging.getLogger(__name__)

BLIND_SIZE = 448
"""Side of the square every image is shown at (crops are letterboxed onto it)."""
BLIND_QUALITY = 90


def pool_dir(state_dir: Path) -> Path:
    return Path(state_dir) / "rating"


def blind_jpeg(data: bytes, size: int = BLIND_SIZE) -> bytes:
    """Pixels only: decode, orient, fit on a neutral ``size`` x ``size`` canvas, encode with fixed
    settings and no metadata of any kind."""
    with Image.open(io.BytesIO(data)) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        scale = size / max(im.size)
        im = im.resize(
            (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))), Image.Resampling.LANCZOS
        )
        canvas = Image.new("RGB", (size, size), (128, 128, 128))
        canvas.paste(im, ((size - im.size[0]) // 2, (size - im.size[1]) // 2))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=BLIND_QUALITY, optimize=False, progressive=False, subsampling=2)
    return out.getvalue()


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".partial")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def candidates(conn: sqlite3.Connection, t0: float, t1: float) -> list[tuple[Candidate, str]]:
    """Scores of [t0, t1) whose crop the collector holds, with the crop's path. An image the device found
    unscorable (out of the model's domain, no face, quality) is flagged: it is drawn only on request
    (``rating.unscorable_share``), never into the P(pain) strata, whose P(pain) it has no meaning for."""
    rows = conn.execute(
        "SELECT s.msg_id, s.cage_id, s.t, s.p_pain, (coalesce(s.needs_review, 0) <> 0 OR coalesce(s.asleep, 0) <> 0 "
        "OR coalesce(s.outcome, '') = 'unscorable'), c.path "
        "FROM scores s JOIN crops c ON c.msg_id = s.msg_id WHERE s.t >= ? AND s.t < ?",
        [t0, t1],
    ).fetchall()
    return [(Candidate(m, cage, t, p, bool(f)), path) for m, cage, t, p, f, path in rows]


_SCORE_FIELDS = (
    "t",
    "site",
    "device_id",
    "cage_id",
    "animal_id",
    "model_name",
    "model_version",
    "model_sha256",
    "model_synthetic",
    "p_pain",
    "is_pain",
    "amgs",
    "needs_review",
    "asleep",
    *(f"au_{k}" for k in AU_KEYS),
    "mgs_au",
)


def _has_score_after(conn: sqlite3.Connection, cage_id: str, t: float) -> bool:
    """The cage's day is over in the data too: a score after it arrived (late crops had their chance)."""
    return (
        conn.execute("SELECT 1 FROM scores WHERE cage_id = ? AND t >= ? LIMIT 1", [cage_id, t]).fetchone()
        is not None
    )


def _group_of(conn: sqlite3.Connection, animal_id: str | None, cage_id: str) -> str | None:
    if animal_id:
        row = conn.execute("SELECT group_id FROM animals WHERE animal_id = ?", [animal_id]).fetchone()
        if row and row[0]:
            return row[0]
    groups = conn.execute(
        "SELECT DISTINCT group_id FROM animals WHERE cage_id = ? AND group_id IS NOT NULL", [cage_id]
    ).fetchall()
    return groups[0][0] if len(groups) == 1 else None


def fill_pool(conn: sqlite3.Connection, config, now: float | None = None) -> dict:
    """Sample the last ``days_back`` complete local days into the pool; returns counts.

    ``config`` is the :class:`ServerConfig` (``rating``, ``photoperiod``, ``storage.state_dir``).
    """
    cfg, pp = config.rating, config.photoperiod
    now = time.time() if now is None else now
    out = {"days": 0, "added": 0, "missing_files": 0}
    if not cfg.enabled or cfg.per_cage_per_day <= 0:
        return out
    folder = pool_dir(config.storage.state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    today = local_day(now, pp.timezone)
    for back in range(cfg.days_back, 0, -1):
        day = today - dt.timedelta(days=back)
        t0, t1 = local_day_bounds(day, pp.timezone)
        done = {
            r[0] for r in conn.execute("SELECT cage_id FROM rating_days WHERE day = ?", [day.isoformat()])
        }
        found = [(c, p) for c, p in candidates(conn, t0, t1) if c.cage_id not in done]
        moved_on = {cage for cage in {c.cage_id for c, _ in found} if _has_score_after(conn, cage, t1)}
        found = [(c, p) for c, p in found if c.cage_id in moved_on]
        if not found:
            continue
        paths = {c.msg_id: p for c, p in found}
        pooled = {
            r[0]
            for r in conn.execute(
                "SELECT msg_id FROM rating_items WHERE t >= ? AND t < ?", [t0, t1]
            ).fetchall()
        }
        picks = sample_day([c for c, _ in found], day, cfg, pp, already=pooled)
        # the slow part (decode, re-encode, fsync) happens before the write transaction, so the
        # collector's ingest writer never waits for it; the transaction only inserts rows
        prepared = [(pick, _prepare(config, folder, pick, paths[pick.msg_id])) for pick in picks]
        per_cage: dict[str, int] = {}
        conn.execute("BEGIN IMMEDIATE")
        try:
            for pick, files in prepared:
                if files and _insert_item(conn, config, pick, files, day, now):
                    out["added"] += 1
                    per_cage[pick.cage_id] = per_cage.get(pick.cage_id, 0) + 1
                else:
                    out["missing_files"] += 1
            for cage in {c.cage_id for c, _ in found}:
                conn.execute(
                    "INSERT OR REPLACE INTO rating_days (day, cage_id, n, sampled_at) VALUES (?, ?, ?, ?)",
                    [day.isoformat(), cage, per_cage.get(cage, 0), now],
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        out["days"] += 1
    return out


def _prepare(config, folder: Path, pick, crop_path: str) -> tuple[str, str] | None:
    """Write the source copy and the blinded copy of a pick; their paths relative to ``state_dir``. The
    names are internal (never sent to a browser: raters see tokens)."""
    src = Path(config.storage.state_dir) / crop_path
    try:
        data = src.read_bytes()
        blinded = blind_jpeg(data)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        log.warning("rating pool: crop %s of %s cannot be used: %s", crop_path, pick.msg_id, e)
        return None
    stem = hashlib.sha256(pick.msg_id.encode()).hexdigest()[:24]
    _write(folder / f"{stem}.src.jpg", data)
    _write(folder / f"{stem}.jpg", blinded)
    return f"rating/{stem}.jpg", f"rating/{stem}.src.jpg"


def _insert_item(conn, config, pick, files: tuple[str, str], day: dt.date, now: float) -> bool:
    row = conn.execute(
        f"SELECT {', '.join(_SCORE_FIELDS)} FROM scores WHERE msg_id = ?", [pick.msg_id]
    ).fetchone()
    if row is None:
        return False
    score = dict(zip(_SCORE_FIELDS, row, strict=True))
    phase = "light" if is_light(score["t"], config.photoperiod) else "dark"
    conn.execute(
        "INSERT INTO rating_items (msg_id, sampled_at, day, stratum, repeat, state, state_at, image, source, "
        f"group_id, phase, {', '.join(_SCORE_FIELDS)}) "
        f"VALUES (?, ?, ?, ?, ?, 'open', ?, ?, ?, ?, ?, {', '.join('?' * len(_SCORE_FIELDS))})",
        [
            pick.msg_id,
            now,
            day.isoformat(),
            pick.stratum,
            int(pick.repeat),
            now,
            *files,
            _group_of(conn, score["animal_id"], score["cage_id"]),
            phase,
            *row,
        ],
    )
    return True


def expire_pool(conn: sqlite3.Connection, config, now: float | None = None) -> int:
    """Items nobody rated within ``unrated_expire_days`` leave the pool (files deleted, row kept)."""
    days = config.rating.unrated_expire_days
    if not days:
        return 0
    now = time.time() if now is None else now
    rows = conn.execute(
        "SELECT item_id, image, source FROM rating_items i WHERE state = 'open' AND sampled_at < ? "
        "AND NOT EXISTS (SELECT 1 FROM ratings r WHERE r.item_id = i.item_id)",
        [now - days * 86400],
    ).fetchall()
    for item_id, image, source in rows:
        conn.execute(
            "UPDATE rating_items SET state = 'expired', state_at = ?, image = NULL, source = NULL "
            "WHERE item_id = ?",
            [now, item_id],
        )
        for rel in (image, source):
            if rel:
                (Path(config.storage.state_dir) / rel).unlink(missing_ok=True)
    return len(rows)


def mirror_rated(conn: sqlite3.Connection, config) -> int:
    """Copy the source image of every rated item into ``backups/rating/`` (once): the ratings travel in the
    database backups, their faces in this folder, so both survive the loss of ``state_dir/rating``."""
    dest = Path(config.storage.backups_dir) / "rating"
    copied = 0
    rows = conn.execute(
        "SELECT source FROM rating_items i WHERE source IS NOT NULL AND EXISTS "
        "(SELECT 1 FROM ratings r WHERE r.item_id = i.item_id)"
    ).fetchall()
    for (rel,) in rows:
        target = dest / Path(rel).name
        if target.exists():
            continue
        try:
            data = (Path(config.storage.state_dir) / rel).read_bytes()
        except OSError:
            continue
        dest.mkdir(parents=True, exist_ok=True)
        _write(target, data)
        copied += 1
    return copied
