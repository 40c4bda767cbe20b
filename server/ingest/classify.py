"""Turn raw MQTT messages into rows, or into a quarantine reason. Pure functions: no I/O, no state.

Every message the collector receives ends up in exactly one of: a score row, a device status update,
a crop, or the quarantine (with the reason). Nothing that arrives can raise out of :func:`classify`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from amgs.contract import AU_KEYS, ContractError, parse_time, parse_topic

from .fastcheck import decode

JPEG_MAGIC = b"\xff\xd8\xff"
EARLIEST = 946684800.0  # 2000-01-01: a capture time before this comes from a clock that was never set


@dataclass
class Incoming:
    """One message as the MQTT callback enqueued it. ``generation`` = the connection it came on."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 0
    retain: bool = False
    received_at: float = 0.0
    generation: int = 0


@dataclass
class Classified:
    kind: str  # score, status, crop, quarantine
    incoming: Incoming
    site: str | None = None
    device_id: str | None = None
    message: dict[str, Any] | None = None
    row: dict[str, Any] | None = None
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def score_row(msg: dict[str, Any], received_at: float) -> dict[str, Any]:
    """A validated ``amgs.score/1`` message -> a ``scores`` row (see db.SCORE_COLUMNS)."""
    au = msg.get("au") or {}
    quality = msg.get("quality") or {}
    model = msg["model"]
    clock = msg["clock"]
    row = {
        "msg_id": msg["msg_id"],
        "device_id": msg["device_id"],
        "site": msg["site"],
        "cage_id": msg["cage_id"],
        "animal_id": msg.get("animal_id"),
        "view": msg.get("view"),
        "seq": int(msg["seq"]),
        "captured_at": msg["captured_at"],
        "t": parse_time(msg["captured_at"]).timestamp(),
        "received_at": received_at,
        "clock_synced": int(bool(clock["synced"])),
        "boot_id": clock["boot_id"],
        "monotonic_s": clock["monotonic_s"],
        "model_name": model["name"],
        "model_version": model["version"],
        "model_sha256": model["sha256"],
        "p_pain": msg["p_pain"],
        "label": msg["label"],
        "is_pain": int(msg["label"] == "pain"),
        "amgs": msg["amgs"],
        "confidence": msg["confidence"],
        "needs_review": int(bool(msg["needs_review"])),
        "mgs_au": msg.get("mgs_au"),
        "sharpness": quality.get("sharpness"),
        "exposure": quality.get("exposure"),
        "face_px": quality.get("face_px"),
        "motion": quality.get("motion"),
        "asleep": None if quality.get("asleep") is None else int(quality["asleep"]),
        "inference_ms": msg.get("inference_ms"),
        "has_crop": int(bool(msg.get("has_crop", False))),
        "face_box": "[" + ",".join(map(str, msg["face_box"])) + "]" if msg.get("face_box") else None,
    }
    for k in AU_KEYS:
        row[f"au_{k}"] = au.get(k) if au else None
    if row["mgs_au"] is None and au:
        row["mgs_au"] = sum(au[k] for k in AU_KEYS) / len(AU_KEYS)
    return row


def _check_origin(msg: dict[str, Any], site: str, device_id: str) -> None:
    if msg["device_id"] != device_id or msg["site"] != site:
        raise ContractError(
            f"message says device {msg['device_id']!r} at site {msg['site']!r} but arrived on the topic of "
            f"device {device_id!r} at site {site!r}",
            "device_id",
        )


def classify(
    item: Incoming, *, crop_max_bytes: int, is_registered: Callable[[str], bool] | None = None
) -> Classified:
    """Decide what a message is. ``is_registered`` (when given) says which devices' scores are accepted."""
    try:
        topic = parse_topic(item.topic)
    except ContractError as e:
        return Classified("quarantine", item, reason=f"topic: {e}")
    base = {"site": topic.site, "device_id": topic.device}
    try:
        if topic.kind == "score":
            msg = decode(item.payload, "amgs.score/1")
            _check_origin(msg, topic.site, topic.device)
            if is_registered is not None and not is_registered(topic.device):
                raise ContractError(
                    f"unknown device {topic.device!r}: register it with `amgs server device add {topic.device}`",
                    "device_id",
                )
            row = score_row(msg, item.received_at)
            if row["t"] < EARLIEST:
                raise ContractError("capture time before 2000: the clock is not usable", "captured_at")
            return Classified("score", item, message=msg, row=row, **base)
        if topic.kind == "status":
            msg = decode(item.payload, "amgs.status/1")
            _check_origin(msg, topic.site, topic.device)
            parse_time(msg["at"])
            return Classified("status", item, message=msg, **base)
        if topic.kind == "crop":
            size = len(item.payload)
            if size > crop_max_bytes:
                raise ContractError(f"crop of {size} bytes exceeds storage.crop_max_bytes = {crop_max_bytes}")
            if not item.payload.startswith(JPEG_MAGIC):
                raise ContractError("crop payload is not a JPEG (no FF D8 FF start marker)")
            return Classified("crop", item, extra={"msg_id": topic.item}, **base)
        return Classified(
            "quarantine", item, reason=f"topic: the collector does not take {topic.kind!r} messages", **base
        )
    except ContractError as e:
        return Classified("quarantine", item, reason=str(e), **base)
    except (ValueError, TypeError, KeyError, OverflowError) as e:  # a contract gap: keep the evidence
        return Classified("quarantine", item, reason=f"unexpected {type(e).__name__}: {e}", **base)
