"""Turn raw MQTT messages into rows, or into a quarantine reason. Pure functions: no I/O, no state.

Every message the collector receives ends up in exactly one of: a score row, a device status update,
a crop, or the quarantine (with the reason and the field it names). Nothing that arrives can raise out
of :func:`classify`. The message models of ``amgs.contract`` do the checking (pydantic, from the raw
bytes); :func:`score_row` is the one mapping from a score message to a ``scores`` row.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from amgs.contract import AU_KEYS, ContractError, Message, Score, Status, parse_time, parse_topic

from .incoming import Incoming

__all__ = ["Classified", "Incoming", "classify", "score_row"]

JPEG_MAGIC = b"\xff\xd8\xff"


@dataclasses.dataclass
class Classified:
    kind: str  # score, status, crop, quarantine
    incoming: Incoming
    site: str | None = None
    device_id: str | None = None
    message: Message | None = None
    row: dict[str, Any] | None = None
    reason: str | None = None
    field: str | None = None  # the message field a quarantine reason names (or payload / topic / internal)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def score_row(msg: Score | dict[str, Any], received_at: float) -> dict[str, Any]:
    """An ``amgs.score/1`` message -> a ``scores`` row (the columns of db.SCORE_COLUMNS). The one mapping
    from message to row: ingest, the benchmark and the tests' fixtures all build rows here."""
    if isinstance(msg, dict):
        msg = Score.check(msg)
    au, quality, model, clock = msg.au, msg.quality, msg.model, msg.clock
    row = {
        "msg_id": msg.msg_id,
        "device_id": msg.device_id,
        "site": msg.site,
        "cage_id": msg.cage_id,
        "animal_id": msg.animal_id,
        "view": msg.view,
        "seq": msg.seq,
        "captured_at": msg.captured_at,
        "t": parse_time(msg.captured_at).timestamp(),
        "received_at": received_at,
        "clock_synced": int(clock.synced),
        "boot_id": clock.boot_id,
        "monotonic_s": clock.monotonic_s,
        "model_name": model.name,
        "model_version": model.version,
        "model_sha256": model.sha256,
        "model_synthetic": None if model.synthetic is None else int(model.synthetic),
        "p_pain": _prob(msg.p_pain),
        "label": msg.label,
        "is_pain": int(msg.label == "pain"),
        "amgs": _prob(msg.amgs),
        "confidence": _prob(msg.confidence),
        "needs_review": int(msg.needs_review),
        "mgs_au": msg.mgs_au,
        "sharpness": quality and quality.sharpness,
        "exposure": quality and quality.exposure,
        "face_px": quality and quality.face_px,
        "motion": quality and quality.motion,
        "asleep": None if quality is None or quality.asleep is None else int(quality.asleep),
        "inference_ms": msg.inference_ms,
        "has_crop": int(bool(msg.has_crop)),
        "face_box": "[" + ",".join(map(str, msg.face_box)) + "]" if msg.face_box else None,
        "det_score": quality and quality.det_score,
        # NULL outcome: a device older than the field (its label stands); unscorable rows keep their raw
        # p_pain/label/amgs for the record only and count in no mean, fraction or alert (schema.SCORABLE)
        "outcome": msg.outcome,
        "unscorable_reason": msg.unscorable_reason,
        "domain_distance": msg.domain_distance,
    }
    for k in AU_KEYS:
        row[f"au_{k}"] = getattr(au, k) if au else None
    if row["mgs_au"] is None and au:
        row["mgs_au"] = sum(getattr(au, k) for k in AU_KEYS) / len(AU_KEYS)
    return row


def _prob(value: float) -> float:
    """A probability as stored: 12 decimals (devices send 6). Below 5e-13 is 0, so no square in the rollup
    sums underflows, which PostgreSQL reports as an error where SQLite quietly gives 0."""
    return round(value, 12)


def _check_origin(msg: Score | Status, site: str, device_id: str) -> None:
    if msg.device_id != device_id or msg.site != site:
        raise ContractError(
            f"message says device {msg.device_id!r} at site {msg.site!r} but arrived on the topic of "
            f"device {device_id!r} at site {site!r}",
            "device_id",
        )


def metric_field(path: str) -> str:
    """A ContractError path as a metrics label: list positions folded ("face_box[2]" -> "face_box[]")."""
    return re.sub(r"\[\d+\]", "[]", path) if path else "payload"


def classify(
    item: Incoming, *, crop_max_bytes: int, is_registered: Callable[[str], bool] | None = None
) -> Classified:
    """Decide what a message is. ``is_registered`` (when given) says which devices' scores are accepted."""
    try:
        topic = parse_topic(item.topic)
    except ContractError as e:
        return Classified("quarantine", item, reason=f"topic: {e}", field="topic")
    base = {"site": topic.site, "device_id": topic.device}
    try:
        if topic.kind == "score":
            msg = Score.parse(item.payload)
            _check_origin(msg, topic.site, topic.device)
            if is_registered is not None and not is_registered(topic.device):
                raise ContractError(
                    f"unknown device {topic.device!r}: register it with `amgs server device add {topic.device}`",
                    "device_id",
                )
            # the row is all the writer needs: the model is let go at once (a batch of 1,000 models and
            # their parts kept alive until the commit costs the collector's garbage collector ~10 us a score)
            # a candidate model's score of the same face (shadow mode) travels beside the row, stored apart
            extra = {"shadow": msg.shadow.model_dump(mode="json")} if msg.shadow is not None else {}
            return Classified("score", item, row=score_row(msg, item.received_at), extra=extra, **base)
        if topic.kind == "status":
            msg = Status.parse(item.payload)
            _check_origin(msg, topic.site, topic.device)
            return Classified("status", item, message=msg, **base)
        if topic.kind == "crop":
            size = len(item.payload)
            if size > crop_max_bytes:
                raise ContractError(f"crop of {size} bytes exceeds storage.crop_max_bytes = {crop_max_bytes}")
            if not item.payload.startswith(JPEG_MAGIC):
                raise ContractError("crop payload is not a JPEG (no FF D8 FF start marker)")
            return Classified("crop", item, extra={"msg_id": topic.item}, **base)
        return Classified(
            "quarantine",
            item,
            reason=f"topic: the collector does not take {topic.kind!r} messages",
            field="topic",
            **base,
        )
    except ContractError as e:
        return Classified("quarantine", item, reason=str(e), field=metric_field(e.path), **base)
    except (ValueError, TypeError, KeyError, OverflowError) as e:  # a contract gap: keep the evidence
        return Classified(
            "quarantine", item, reason=f"unexpected {type(e).__name__}: {e}", field="internal", **base
        )
