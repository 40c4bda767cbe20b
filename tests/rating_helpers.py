"""Helpers for the rating tests: a collector database with scores and stored crops written as the
ingest stores them (rows in ``scores`` and ``crops``, JPEG files under ``state_dir/crops``)."""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image

from amgs.contract import AU_KEYS
from amgs.server.storage.db import SCORE_COLUMNS, open_database

REVEALING_COMMENT = b"cage=C07 device=box-03 2026-03-02T10:00:00Z p_pain=0.93"


def device_jpeg(seed: int, size=(299, 299), comment: bytes = REVEALING_COMMENT) -> bytes:
    """A crop as a device might send it: with a JPEG comment and EXIF naming cage, device and time."""
    rng = random.Random(seed)
    im = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    exif = Image.Exif()
    exif[0x010F] = "box-03"  # Make
    exif[0x0132] = "2026:03:02 10:00:00"  # DateTime
    exif[0x010E] = "cage C07"  # ImageDescription
    out = io.BytesIO()
    im.save(out, "JPEG", quality=75, exif=exif, comment=comment)
    return out.getvalue()


def open_db(config):
    """The collector's database, migrated (the rating tables come with schema version 7)."""
    return open_database(config)


def add_score(
    conn,
    state_dir: Path,
    msg_id: str,
    cage: str,
    t: float,
    p: float,
    *,
    device: str = "dev1",
    animal: str | None = None,
    mgs_au: float | None = None,
    crop: bool = True,
    flagged: bool = False,
    model_version: str = "1.0.0",
    model_name: str = "amgs-test",
    jpeg: bytes | None = None,
    synthetic: bool = False,
    unscorable: str | None = None,
) -> None:
    """A stored score (``unscorable``: its reason, for an unscorable record)."""
    au = mgs_au if mgs_au is not None else 2 * p
    row = {
        "msg_id": msg_id,
        "device_id": device,
        "site": "lab1",
        "cage_id": cage,
        "animal_id": animal,
        "view": None,
        "seq": abs(hash(msg_id)) % 10**9,
        "captured_at": "x",
        "t": t,
        "received_at": t,
        "clock_synced": 1,
        "boot_id": "b",
        "monotonic_s": 0.0,
        "model_name": model_name,
        "model_version": model_version,
        "model_sha256": "0" * 64,
        "model_synthetic": int(synthetic),
        "p_pain": p,
        "label": "pain" if p >= 0.5 else "no pain",
        "is_pain": int(p >= 0.5),
        "amgs": p,
        "confidence": max(p, 1 - p),
        "needs_review": int(flagged),
        **{f"au_{k}": au for k in AU_KEYS},
        "mgs_au": au,
        "sharpness": None,
        "exposure": None,
        "face_px": None,
        "motion": None,
        "asleep": 0,
        "inference_ms": None,
        "has_crop": int(crop),
        "face_box": None,
        "outcome": "unscorable" if unscorable else None,
        "unscorable_reason": unscorable,
        "domain_distance": None,
        "det_score": None,
    }
    assert set(row) == set(SCORE_COLUMNS)
    have = {
        d[0] for d in conn.execute("SELECT * FROM scores LIMIT 0").description
    }  # an older schema: its own
    row = {k: v for k, v in row.items() if k in have}
    conn.execute(
        f"INSERT INTO scores ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
    )
    if crop:
        data = jpeg if jpeg is not None else device_jpeg(abs(hash(msg_id)) % 1000)
        rel = Path("crops") / device / f"{msg_id}.jpg"
        (state_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (state_dir / rel).write_bytes(data)
        conn.execute(
            "INSERT INTO crops (msg_id, device_id, received_at, size, path) VALUES (?, ?, ?, ?, ?)",
            [msg_id, device, t, len(data), str(rel)],
        )
