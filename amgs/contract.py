"""The wire contract between cage devices and the collector: MQTT topics and message schemas.

This module is the single definition of what travels over MQTT. Both sides import it, the JSON
Schema files in ``docs/contract/`` are generated from it (``amgs contract schema``), and the docs
describe it. It depends on the standard library only, so it runs on any device.

Messages are UTF-8 JSON objects carrying a ``schema`` field such as ``"amgs.score/1"``: the kind of
message and its major version. A collector refuses (quarantines) a major version it does not know.

Topic tree (``{site}`` and ``{device}`` are ids matching :data:`ID_PATTERN`)::

    amgs/v1/{site}/{device}/score      device -> collector   QoS 1   one score record
    amgs/v1/{site}/{device}/status     device -> collector   QoS 1   retained; last will = offline
    amgs/v1/{site}/{device}/crop/{id}  device -> collector   QoS 0   JPEG face crop of score {id}
    amgs/v1/{site}/{device}/ack        collector -> device   QoS 1   retained committed watermark
    amgs/v1/{site}/{device}/command    collector -> device   QoS 1   requests to the device
    amgs/v1/{site}/alert/{cage}        collector -> anyone   QoS 1   retained current alert state
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TOPIC_ROOT = "amgs/v1"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)
MAX_PAYLOAD_BYTES = 64 * 1024
"""Largest JSON message either side accepts; larger ones are quarantined unread."""

LABELS = ("no pain", "pain")
"""Class order of every model's pain output, index 0 and 1."""

AU_KEYS = ("ot", "nb", "cb", "ep", "wc")
"""MGS action units (Langford 2010): orbital tightening, nose bulge, cheek bulge, ear position, whisker change."""

AU_NAMES = {
    "ot": "orbital tightening",
    "nb": "nose bulge",
    "cb": "cheek bulge",
    "ep": "ear position",
    "wc": "whisker change",
}


class ContractError(ValueError):
    """A message or topic does not follow the contract. ``path`` names the offending field."""

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


# --------------------------------------------------------------------------- topics


def check_id(value: str, what: str = "id") -> str:
    """Refuse ids that would break the topic tree (``/``, ``+``, ``#``, spaces, empty, too long)."""
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise ContractError(
            f"{what} {value!r} is not allowed: use 1-64 letters, digits, '_', '.', '-' starting with a letter or digit"
        )
    return value


def score_topic(site: str, device: str) -> str:
    return f"{TOPIC_ROOT}/{check_id(site, 'site')}/{check_id(device, 'device')}/score"


def status_topic(site: str, device: str) -> str:
    return f"{TOPIC_ROOT}/{check_id(site, 'site')}/{check_id(device, 'device')}/status"


def crop_topic(site: str, device: str, msg_id: str) -> str:
    return f"{TOPIC_ROOT}/{check_id(site, 'site')}/{check_id(device, 'device')}/crop/{check_id(msg_id, 'msg_id')}"


def ack_topic(site: str, device: str) -> str:
    return f"{TOPIC_ROOT}/{check_id(site, 'site')}/{check_id(device, 'device')}/ack"


def command_topic(site: str, device: str) -> str:
    return f"{TOPIC_ROOT}/{check_id(site, 'site')}/{check_id(device, 'device')}/command"


def alert_topic(site: str, cage: str) -> str:
    return f"{TOPIC_ROOT}/{check_id(site, 'site')}/alert/{check_id(cage, 'cage')}"


# Subscriptions the collector uses (site may be "+").
def collector_subscriptions(site: str = "+") -> list[str]:
    return [
        f"{TOPIC_ROOT}/{site}/+/score",
        f"{TOPIC_ROOT}/{site}/+/status",
        f"{TOPIC_ROOT}/{site}/+/crop/+",
    ]


@dataclass(frozen=True)
class Topic:
    """A parsed device topic: ``kind`` is one of score, status, crop, ack, command, alert."""

    site: str
    device: str | None
    kind: str
    item: str | None = None  # crop msg id or alert cage


def parse_topic(topic: str) -> Topic:
    parts = topic.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != TOPIC_ROOT:
        raise ContractError(f"topic {topic!r} is not under {TOPIC_ROOT}/", "topic")
    site = check_id(parts[2], "site")
    if parts[3] == "alert" and len(parts) == 5:
        return Topic(site, None, "alert", check_id(parts[4], "cage"))
    device = check_id(parts[3], "device")
    rest = parts[4:]
    if len(rest) == 1 and rest[0] in {"score", "status", "ack", "command"}:
        return Topic(site, device, rest[0])
    if len(rest) == 2 and rest[0] == "crop":
        return Topic(site, device, "crop", check_id(rest[1], "msg_id"))
    raise ContractError(f"topic {topic!r} has an unknown kind", "topic")


# --------------------------------------------------------------------------- schemas
# Each schema is JSON Schema (draft 2020-12 subset). The validator below implements exactly the
# keywords used here; tests check it agrees with the reference `jsonschema` implementation.

_ID = {"type": "string", "pattern": ID_PATTERN}
_OPT_ID = {"type": ["string", "null"], "pattern": ID_PATTERN}
_TIME = {
    "type": "string",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$",
    "description": "UTC time, RFC 3339 with a Z suffix",
}
_PROB = {"type": "number", "minimum": 0, "maximum": 1}
_AU_VALUE = {"type": "number", "minimum": 0, "maximum": 2}
_SHA = {"type": "string", "pattern": r"^[0-9a-f]{64}$"}
_TEXT = {"type": "string", "maxLength": 200}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}, "maxProperties": 64}

MODEL_REF = {
    "type": "object",
    "required": ["name", "version", "sha256"],
    "additionalProperties": False,
    "properties": {"name": _TEXT, "version": _TEXT, "sha256": _SHA},
}

CLOCK = {
    "type": "object",
    "description": "How far the capture time can be trusted: a Pi without RTC boots with a stale clock.",
    "required": ["synced", "boot_id", "monotonic_s"],
    "additionalProperties": False,
    "properties": {
        "synced": {"type": "boolean", "description": "the system clock was NTP/RTC-synchronized at capture"},
        "boot_id": {"type": "string", "maxLength": 64},
        "monotonic_s": {"type": "number", "minimum": 0, "description": "CLOCK_MONOTONIC at capture"},
    },
}

SCORE = {
    "$id": "amgs.score/1",
    "title": "Score record: one scored face image",
    "type": "object",
    "required": [
        "schema",
        "msg_id",
        "seq",
        "device_id",
        "site",
        "cage_id",
        "captured_at",
        "clock",
        "model",
        "p_pain",
        "label",
        "amgs",
        "confidence",
        "needs_review",
    ],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": "amgs.score/1"},
        "msg_id": {
            "type": "string",
            "pattern": r"^[0-9a-f]{32}$",
            "description": "uuid4 hex; idempotency key",
        },
        "seq": {
            "type": "integer",
            "minimum": 1,
            "description": "per-device sequence, +1 per record, for gap counting",
        },
        "device_id": _ID,
        "site": _ID,
        "cage_id": _ID,
        "animal_id": _OPT_ID,
        "view": _OPT_ID,
        "captured_at": _TIME,
        "clock": CLOCK,
        "model": MODEL_REF,
        "p_pain": _PROB,
        "label": {"enum": list(LABELS)},
        "amgs": {**_PROB, "description": "automated MGS score on 0-1 (see amgs.scoring.amgs_score)"},
        "confidence": {"type": "number", "minimum": 0.5, "maximum": 1},
        "needs_review": {"type": "boolean"},
        "au": {
            "type": ["object", "null"],
            "required": list(AU_KEYS),
            "additionalProperties": False,
            "properties": {k: _AU_VALUE for k in AU_KEYS},
        },
        "mgs_au": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
        "quality": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "sharpness": {"type": "number", "minimum": 0},
                "exposure": {"type": "number", "minimum": 0, "maximum": 255},
                "face_px": {"type": "integer", "minimum": 0},
                "motion": {"type": "number", "minimum": 0},
                "asleep": {"type": "boolean"},
            },
        },
        "face_box": {
            "type": ["array", "null"],
            "items": {"type": "integer", "minimum": 0},
            "minItems": 4,
            "maxItems": 4,
            "description": "x, y, w, h in source-frame pixels",
        },
        "inference_ms": {"type": "number", "minimum": 0},
        "has_crop": {
            "type": "boolean",
            "description": "a JPEG crop is kept on the device / sent on crop/{msg_id}",
        },
        "shadow": {
            "type": ["object", "null"],
            "description": "a candidate model's score of the same face (shadow mode): stored apart by the "
            "collector, never used for time courses or alerts",
            "required": ["model", "p_pain", "label", "confidence"],
            "additionalProperties": False,
            "properties": {
                "model": MODEL_REF,
                "p_pain": _PROB,
                "label": {"enum": list(LABELS)},
                "confidence": {"type": "number", "minimum": 0.5, "maximum": 1},
                "mgs_au": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
                "inference_ms": {"type": "number", "minimum": 0},
            },
        },
    },
}

STATUS = {
    "$id": "amgs.status/1",
    "title": "Device status (retained). The last will carries state=offline.",
    "type": "object",
    "required": ["schema", "device_id", "site", "state", "at"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": "amgs.status/1"},
        "device_id": _ID,
        "site": _ID,
        "state": {"enum": ["online", "offline", "degraded"]},
        "at": _TIME,
        "reason": {"type": ["string", "null"], "maxLength": 500},
        "software": _TEXT,
        "uptime_s": {"type": "number", "minimum": 0},
        "queue_depth": {"type": "integer", "minimum": 0},
        "unconfirmed": {"type": "integer", "minimum": 0},
        "last_seq": {"type": "integer", "minimum": 0},
        "last_capture_at": {"type": ["string", "null"], "pattern": _TIME["pattern"]},
        "inference_ms": {"type": ["number", "null"], "minimum": 0},
        "frames": _COUNTS,
        "rejected": _COUNTS,
        "disk_free_bytes": {"type": ["integer", "null"], "minimum": 0},
        "cpu_temp_c": {"type": ["number", "null"]},
        "model": {"oneOf": [MODEL_REF, {"type": "null"}]},
        "model_previous": {"oneOf": [MODEL_REF, {"type": "null"}], "description": "kept for a roll-back"},
        "model_candidate": {"oneOf": [MODEL_REF, {"type": "null"}], "description": "scoring in shadow"},
        "model_update": {
            "type": ["object", "null"],
            "description": "the last model change the collector asked for and how it went",
            "additionalProperties": False,
            "properties": {
                "state": {"enum": ["downloading", "active", "shadow", "failed", "rolled_back", "idle"]},
                "sha256": {"type": ["string", "null"], "pattern": r"^[0-9a-f]{64}$"},
                "error": {"type": ["string", "null"], "maxLength": 500},
                "at": _TIME,
            },
        },
        "clock": {"oneOf": [CLOCK, {"type": "null"}]},
        "views": {
            "type": "array",
            "maxItems": 64,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["view", "cage_id"],
                "properties": {
                    "view": _ID,
                    "cage_id": _ID,
                    "animal_id": _OPT_ID,
                    "source_ok": {"type": "boolean"},
                    "error": {"type": ["string", "null"], "maxLength": 500},
                },
            },
        },
        "storage_warning": {"type": ["string", "null"], "maxLength": 500},
        "errors": {"type": "array", "maxItems": 20, "items": {"type": "string", "maxLength": 500}},
    },
}

ACK = {
    "$id": "amgs.ack/1",
    "title": "Collector watermark (retained): every seq <= committed_seq of this device is stored",
    "type": "object",
    "required": ["schema", "device_id", "committed_seq", "at"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": "amgs.ack/1"},
        "device_id": _ID,
        "committed_seq": {"type": "integer", "minimum": 0},
        "at": _TIME,
    },
}

COMMAND = {
    "$id": "amgs.command/1",
    "title": "A request from the collector to a device",
    "type": "object",
    "required": ["schema", "command", "at"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": "amgs.command/1"},
        "command": {"enum": ["send_crops", "publish_status", "resend_from", "model_assign"]},
        "msg_ids": {
            "type": "array",
            "maxItems": 500,
            "items": {"type": "string", "pattern": r"^[0-9a-f]{32}$"},
        },
        "seq": {"type": "integer", "minimum": 0},
        "active": {
            "oneOf": [MODEL_REF, {"type": "null"}],
            "description": "model_assign (retained): the model the device scores with (null: its configured one)",
        },
        "candidate": {
            "oneOf": [MODEL_REF, {"type": "null"}],
            "description": "model_assign: a model scored in shadow beside the active one (null: none)",
        },
        "at": _TIME,
    },
}

ALERT = {
    "$id": "amgs.alert/1",
    "title": "Alert state for a cage (retained per cage)",
    "type": "object",
    "required": [
        "schema",
        "alert_id",
        "rule",
        "site",
        "cage_id",
        "severity",
        "state",
        "opened_at",
        "updated_at",
    ],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": "amgs.alert/1"},
        "alert_id": {"type": "string", "maxLength": 64},
        "rule": _TEXT,
        "site": _ID,
        "cage_id": _ID,
        "animal_id": _OPT_ID,
        "device_id": _OPT_ID,
        "severity": {"enum": ["info", "warning", "alert", "humane_endpoint"]},
        "state": {"enum": ["open", "acknowledged", "resolved"]},
        "opened_at": _TIME,
        "updated_at": _TIME,
        "message": {"type": "string", "maxLength": 1000},
        "value": {"type": ["number", "null"]},
        "threshold": {"type": ["number", "null"]},
    },
}

SCHEMAS: dict[str, dict[str, Any]] = {s["$id"]: s for s in (SCORE, STATUS, ACK, COMMAND, ALERT)}


# --------------------------------------------------------------------------- validation

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def _is_type(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    if name == "number" and isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, _TYPES[name])


def _validate(value: Any, schema: dict[str, Any], path: str) -> None:
    if "const" in schema and value != schema["const"]:
        raise ContractError(f"must be {schema['const']!r}, got {value!r:.80}", path)
    if "enum" in schema and value not in schema["enum"]:
        raise ContractError(f"must be one of {schema['enum']}, got {value!r:.80}", path)
    if "oneOf" in schema:
        errors = []
        for option in schema["oneOf"]:
            try:
                _validate(value, option, path)
                break
            except ContractError as e:
                errors.append(str(e))
        else:
            raise ContractError("matches no allowed form: " + " | ".join(errors), path)
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        if not any(_is_type(value, t) for t in names):
            raise ContractError(f"must be {' or '.join(names)}, got {type(value).__name__}", path)
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise ContractError(f"longer than {schema['maxLength']} characters", path)
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise ContractError(f"{value!r:.80} does not match {schema['pattern']}", path)
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            raise ContractError(f"{value} is below the minimum {schema['minimum']}", path)
        if "maximum" in schema and value > schema["maximum"]:
            raise ContractError(f"{value} is above the maximum {schema['maximum']}", path)
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            raise ContractError(f"needs at least {schema['minItems']} items", path)
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise ContractError(f"allows at most {schema['maxItems']} items", path)
        if "items" in schema:
            for i, item in enumerate(value):
                _validate(item, schema["items"], f"{path}[{i}]")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                raise ContractError("is required", f"{path}.{key}" if path else key)
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            raise ContractError(f"allows at most {schema['maxProperties']} keys", path)
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if key in props:
                _validate(item, props[key], sub)
            elif extra is False:
                raise ContractError("is not a field of this message", sub)
            elif isinstance(extra, dict):
                _validate(item, extra, sub)


def validate(message: Any, schema_id: str | None = None) -> dict[str, Any]:
    """Check a decoded message against its schema; return it or raise :class:`ContractError`."""
    if not isinstance(message, dict):
        raise ContractError(f"a message must be a JSON object, got {type(message).__name__}")
    sid = message.get("schema")
    if schema_id is not None and sid != schema_id:
        raise ContractError(f"expected {schema_id!r}, got {sid!r:.80}", "schema")
    if not isinstance(sid, str) or sid not in SCHEMAS:
        raise ContractError(f"unknown schema {sid!r:.80}; this software knows {sorted(SCHEMAS)}", "schema")
    _validate(message, SCHEMAS[sid], "")
    return message


def decode(payload: bytes, schema_id: str | None = None) -> dict[str, Any]:
    """Parse and validate raw MQTT payload bytes."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ContractError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        message = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ContractError(f"payload is not UTF-8 ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ContractError(f"payload is not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    return validate(message, schema_id)


def encode(message: dict[str, Any]) -> bytes:
    """Validate and serialize a message (compact, key order kept)."""
    validate(message)
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode("utf-8")


# --------------------------------------------------------------------------- helpers


def utc_now() -> str:
    return format_time(datetime.now(UTC))


def format_time(t: datetime) -> str:
    """RFC 3339 UTC with millisecond precision and a Z suffix, the contract's only time format."""
    if t.tzinfo is None:
        raise ValueError("naive datetime: attach a timezone before formatting")
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def new_msg_id() -> str:
    return uuid.uuid4().hex


def json_schema_document(schema_id: str) -> dict[str, Any]:
    """The schema as a standalone JSON Schema document (what docs/contract/*.json hold)."""
    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    doc.update(SCHEMAS[schema_id])
    return doc
