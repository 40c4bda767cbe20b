"""The wire contract between cage devices and the collector: MQTT topics and message models.

This module is the single definition of what travels over MQTT. Each message kind is a pydantic model
(:class:`Score`, :class:`Status`, :class:`Ack`, :class:`Command`, :class:`Alert`); both sides import
them, build messages only through them, and check what arrives with them. The JSON Schema files in
``docs/contract/`` are generated from the models (``amgs contract schema``) and the docs describe them.

Messages are UTF-8 JSON objects carrying a ``schema`` field such as ``"amgs.score/1"``: the kind of
message and its major version. A collector refuses (quarantines) a major version it does not know.
Every refusal is a :class:`ContractError` whose ``path`` names the offending field.

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
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

TOPIC_ROOT = "amgs/v1"
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)
MAX_PAYLOAD_BYTES = 64 * 1024
"""Largest JSON message either side accepts; larger ones are quarantined unread."""

MAX_INT = 2**53 - 1
"""Every integer in a message is at most this (the largest integer a JSON number holds exactly in every
language, and far inside SQLite's 64-bit INTEGER)."""
MAX_SEQ = MAX_INT
"""Highest ``seq`` a device may send (at one record a second, 285 million years)."""

TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$"

LABELS = ("no pain", "pain")
"""Class order of every model's pain output, index 0 and 1."""

OUTCOMES = (*LABELS, "unscorable")
"""What an image ends in: one of the labels, or ``unscorable`` (the model must not be believed on it)."""
UNSCORABLE = OUTCOMES[2]

UNSCORABLE_REASONS = ("out_of_domain", "no_face", "quality")
"""Why an image is unscorable (see :mod:`amgs.scoring`, which gives each a name and a meaning)."""

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
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
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


# --------------------------------------------------------------------------- field types
# JSON has one number type: an integer field also takes 2.0 (as JSON Schema's "integer" does), never
# true/false or "2". Every integer is bounded (MAX_INT), every number finite (the models refuse NaN and
# infinities), every time a real calendar time in RFC 3339 UTC.


def _integral(value: Any) -> Any:
    return int(value) if type(value) is float and value.is_integer() else value


def _real_time(text: str) -> str:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(f"{text!r} is not a real UTC time ({e})") from None
    return text


def _int(minimum: int = 0, maximum: int = MAX_INT, description: str | None = None) -> Any:
    return Annotated[int, Field(ge=minimum, le=maximum, description=description), BeforeValidator(_integral)]


Id = Annotated[str, Field(pattern=ID_PATTERN)]
MsgId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
Time = Annotated[
    str,
    Field(
        pattern=TIME_PATTERN,
        json_schema_extra={"format": "date-time"},
        description="UTC time, RFC 3339 with a Z suffix",
    ),
    AfterValidator(_real_time),
]
Prob = Annotated[float, Field(ge=0, le=1)]
AuValue = Annotated[float, Field(ge=0, le=2)]
Count = _int()
Text = Annotated[str, Field(max_length=200)]
Note = Annotated[str, Field(max_length=500)]
Counts = Annotated[dict[str, Count], Field(max_length=64)]


class _Part(BaseModel):
    """A nested object of a message: exact JSON types, no unknown keys.

    Optional fields: ``x: T | None = None`` may be sent as null; ``x: T = None`` may be left out but,
    when sent, must be a T (the default is never validated, and left-out fields stay off the wire).
    """

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class ModelRef(_Part):
    name: Text
    version: Text
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    synthetic: bool = Field(
        None,
        description="the model was trained on SYNTHETIC faces only (its manifest says so): not for real mice",
    )


class Clock(_Part):
    """How far the capture time can be trusted: a Pi without RTC boots with a stale clock."""

    synced: bool = Field(description="the system clock was NTP/RTC-synchronized at capture")
    boot_id: Annotated[str, Field(max_length=64)]
    monotonic_s: float = Field(ge=0, description="CLOCK_MONOTONIC at capture")


class ActionUnits(_Part):
    ot: AuValue
    nb: AuValue
    cb: AuValue
    ep: AuValue
    wc: AuValue


class Quality(_Part):
    sharpness: float = Field(None, ge=0)
    exposure: float = Field(None, ge=0, le=255)
    face_px: Count = None
    motion: float = Field(None, ge=0)
    asleep: bool = None
    det_score: Prob = Field(
        None, description="the face detector's score for face_box (absent: a fixed region)"
    )


class ViewState(_Part):
    view: Id
    cage_id: Id
    animal_id: Id | None = None
    source_ok: bool = None
    error: Note | None = None


# --------------------------------------------------------------------------- messages

M = TypeVar("M", bound="Message")


class Message(_Part):
    """A whole message. ``schema`` is filled in by the model: nobody writes it by hand."""

    SCHEMA: ClassVar[str]

    model_config = ConfigDict(json_schema_extra=lambda schema, cls: _schema_required(schema))

    def wire(self) -> dict[str, Any]:
        """The JSON object as sent: ``schema`` first, fields left out stay left out."""
        return {"schema": self.SCHEMA, **self.model_dump(mode="json", by_alias=True, exclude_unset=True)}

    def encode(self) -> bytes:
        """Compact UTF-8 JSON, what goes on the wire."""
        return json.dumps(self.wire(), separators=(",", ":"), allow_nan=False).encode("utf-8")

    @classmethod
    def parse(cls: type[M], payload: bytes) -> M:
        """Parse and check raw payload bytes as this kind of message (the collector's ingest path)."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ContractError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        try:
            message = cls.model_validate_json(payload)
            if "schema_" in message.model_fields_set:
                return message
        except ValidationError:
            pass
        decode(payload, cls.SCHEMA)  # the slow path words the refusal (not UTF-8, not JSON, which field)
        raise ContractError(f"not a valid {cls.SCHEMA} message")  # pragma: no cover - both paths agree

    @classmethod
    def build(cls: type[M], **fields: Any) -> M:
        """The one way to make a message: ``Ack.build(device_id=..., committed_seq=..., at=...)``.

        ``schema`` is filled in; a wrong field raises :class:`ContractError` naming it."""
        return cls.check({"schema": cls.SCHEMA, **fields})

    @classmethod
    def check(cls: type[M], message: Any) -> M:
        """A decoded JSON object as this kind of message, or :class:`ContractError` naming the field."""
        try:
            checked = cls.model_validate(message)
        except ValidationError as e:
            raise _contract_error(e) from None
        if "schema_" not in checked.model_fields_set:
            raise ContractError(f"is required (here {cls.SCHEMA!r})", "schema")
        return checked


def _schema_required(schema: dict[str, Any]) -> None:
    """On the wire ``schema`` is required; in Python the model fills in its own (nobody writes it)."""
    schema["properties"]["schema"].pop("default", None)
    schema["required"] = ["schema", *schema.get("required", [])]


def _check_outcome(outcome: str | None, reason: str | None, label: str) -> None:
    """The outcome, its reason and the label agree (a score's and a shadow score's; :func:`_outcome_rules`
    says the same in JSON Schema)."""
    if outcome is None:
        if reason is not None:
            raise ValueError("unscorable_reason: is only allowed with outcome 'unscorable'")
    elif outcome == UNSCORABLE:
        if reason is None:
            raise ValueError("unscorable_reason: is required with outcome 'unscorable'")
    elif outcome != label or reason is not None:
        raise ValueError(
            f"outcome: {outcome!r} disagrees with label {label!r}"
            + (" or has an unscorable_reason" if reason else "")
        )


def _outcome_rules(schema: dict[str, Any]) -> None:
    """:meth:`ScoreDraft._outcome_agrees` for JSON Schema readers: the outcome, its reason and the label agree."""

    def present(name: str, sub: dict[str, Any]) -> dict[str, Any]:
        return {"required": [name], "properties": {name: sub}}

    unscorable = {"const": UNSCORABLE}
    schema["allOf"] = [
        {"if": present("unscorable_reason", {"type": "string"}), "then": present("outcome", unscorable)},
        {"if": present("outcome", unscorable), "then": present("unscorable_reason", {"type": "string"})},
        *({"if": present("outcome", {"const": x}), "then": present("label", {"const": x})} for x in LABELS),
    ]


def _schema_field(sid: str) -> Any:
    return Field(sid, alias="schema", description="message kind and major version")


class ShadowScore(_Part):
    """A candidate model's score of the same face (shadow mode): stored apart by the collector, never used
    for time courses or alerts."""

    model_config = ConfigDict(json_schema_extra=lambda schema, cls: _outcome_rules(schema))
    model: ModelRef
    p_pain: Prob
    label: Literal["no pain", "pain"]
    confidence: float = Field(ge=0.5, le=1)
    mgs_au: AuValue | None = None
    inference_ms: float = Field(None, ge=0)
    outcome: Literal[OUTCOMES] = Field(None, description="the candidate's outcome (as the score's)")
    unscorable_reason: Literal[UNSCORABLE_REASONS] | None = None

    @model_validator(mode="after")
    def _outcome_agrees(self) -> ShadowScore:
        _check_outcome(self.outcome, self.unscorable_reason, self.label)
        return self


class ModelUpdate(_Part):
    """The last model change the collector asked for and how it went on the device."""

    state: Literal["downloading", "active", "shadow", "failed", "rolled_back", "idle"]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    error: Note | None = None
    at: Time = None


class ScoreDraft(Message):
    """A score record as the scorer makes it, before the device's outbox numbers it (see :class:`Score`)."""

    SCHEMA: ClassVar[str] = "amgs.score/1"
    model_config = ConfigDict(
        json_schema_extra=lambda schema, cls: (_schema_required(schema), _outcome_rules(schema))
    )
    schema_: Literal["amgs.score/1"] = _schema_field("amgs.score/1")
    msg_id: MsgId = Field(description="uuid4 hex; idempotency key")
    device_id: Id
    site: Id
    cage_id: Id
    animal_id: Id | None = None
    view: Id | None = None
    captured_at: Time
    clock: Clock
    model: ModelRef
    p_pain: Prob
    label: Literal["no pain", "pain"]
    amgs: Prob = Field(description="automated MGS score on 0-1 (see amgs.scoring.amgs_score)")
    confidence: float = Field(ge=0.5, le=1)
    needs_review: bool
    au: ActionUnits | None = None
    mgs_au: AuValue | None = None
    quality: Quality = None
    face_box: Annotated[list[Count], Field(min_length=4, max_length=4)] | None = Field(
        None, description="x, y, w, h in source-frame pixels"
    )
    inference_ms: float = Field(None, ge=0)
    has_crop: bool = Field(None, description="a JPEG crop is kept on the device / sent on crop/{msg_id}")
    shadow: ShadowScore | None = Field(None, description="a candidate model's score of the same face")
    outcome: Literal[OUTCOMES] = Field(
        None,
        description="pain, no pain or unscorable (amgs.scoring); left out by devices older than it, which "
        "means the label. An unscorable record keeps its raw p_pain/label for the record only: the collector "
        "leaves it out of every mean, fraction pain and alert rule",
    )
    unscorable_reason: Literal[UNSCORABLE_REASONS] | None = Field(
        None, description="why the image is unscorable (only with outcome unscorable)"
    )
    domain_distance: float | None = Field(
        None, ge=0, description="the model's in-domain check score (higher = less like its training faces)"
    )

    @model_validator(mode="after")
    def _outcome_agrees(self) -> ScoreDraft:
        _check_outcome(self.outcome, self.unscorable_reason, self.label)
        return self

    @property
    def scorable(self) -> bool:
        """False for an unscorable record (never part of a mean, a fraction or an alert)."""
        return self.outcome != UNSCORABLE

    def numbered(self, seq: int) -> Score:
        """The record as sent, once the outbox has given it its ``seq``."""
        return Score.check({**self.wire(), "seq": seq})


class Score(ScoreDraft):
    """Score record: one scored face image

    ``seq`` is given by the device's outbox when it commits the record (:meth:`ScoreDraft.numbered`)."""

    seq: _int(1, MAX_SEQ, "per-device sequence, +1 per record, for gap counting")


class Status(Message):
    """Device status (retained). The last will carries state=offline."""

    SCHEMA: ClassVar[str] = "amgs.status/1"
    schema_: Literal["amgs.status/1"] = _schema_field("amgs.status/1")
    device_id: Id
    site: Id
    state: Literal["online", "offline", "degraded"]
    at: Time
    reason: Note | None = None
    software: Text = None
    uptime_s: float = Field(None, ge=0)
    queue_depth: Count = None
    unconfirmed: Count = None
    last_seq: _int(maximum=MAX_SEQ) = None
    last_capture_at: Time | None = None
    inference_ms: float | None = Field(None, ge=0)
    frames: Counts = None
    rejected: Counts = None
    disk_free_bytes: Count | None = None
    cpu_temp_c: float | None = None
    model: ModelRef | None = None
    model_previous: ModelRef | None = Field(None, description="kept for a roll-back")
    model_candidate: ModelRef | None = Field(None, description="scoring in shadow")
    model_update: ModelUpdate | None = None
    clock: Clock | None = None
    views: Annotated[list[ViewState], Field(max_length=64)] = None
    storage_warning: Note | None = None
    errors: Annotated[list[Note], Field(max_length=20)] = None


class Ack(Message):
    """Collector watermark (retained): every seq <= committed_seq of this device is stored."""

    SCHEMA: ClassVar[str] = "amgs.ack/1"
    schema_: Literal["amgs.ack/1"] = _schema_field("amgs.ack/1")
    device_id: Id
    committed_seq: _int(maximum=MAX_SEQ)
    at: Time


class Command(Message):
    """A request from the collector to a device."""

    SCHEMA: ClassVar[str] = "amgs.command/1"
    schema_: Literal["amgs.command/1"] = _schema_field("amgs.command/1")
    command: Literal["send_crops", "publish_status", "resend_from", "model_assign"]
    msg_ids: Annotated[list[MsgId], Field(max_length=500)] = None
    seq: _int(maximum=MAX_SEQ) = None
    active: ModelRef | None = Field(
        None,
        description="model_assign (retained): the model the device scores with (null: its configured one)",
    )
    candidate: ModelRef | None = Field(
        None, description="model_assign: a model scored in shadow beside the active one (null: none)"
    )
    at: Time


class Alert(Message):
    """Alert state for a cage (retained per cage)."""

    SCHEMA: ClassVar[str] = "amgs.alert/1"
    schema_: Literal["amgs.alert/1"] = _schema_field("amgs.alert/1")
    alert_id: Annotated[str, Field(max_length=64)]
    rule: Text
    site: Id
    cage_id: Id
    animal_id: Id | None = None
    device_id: Id | None = None
    severity: Literal["info", "warning", "alert", "humane_endpoint"]
    state: Literal["open", "acknowledged", "resolved"]
    opened_at: Time
    updated_at: Time
    message: Annotated[str, Field(max_length=1000)] = None
    value: float | None = None
    threshold: float | None = None


MESSAGES: dict[str, type[Message]] = {m.SCHEMA: m for m in (Score, Status, Ack, Command, Alert)}
"""Every message kind by its ``schema`` id."""


# --------------------------------------------------------------------------- checking


_JSON_TYPES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}
_EXPECTED = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "a boolean",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def _number(x: Any) -> Any:
    return int(x) if isinstance(x, float) and x.is_integer() and abs(x) <= MAX_INT else x


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _contract_error(error: ValidationError) -> ContractError:
    """The first problem pydantic found, worded as the contract's refusal, with the field as ``path``."""
    e = error.errors(include_url=False)[0]
    kind, ctx, value = e["type"], e.get("ctx", {}), e.get("input")
    if kind == "missing":
        text = "is required"
    elif kind == "extra_forbidden":
        text = "is not a field of this message"
    elif kind in ("less_than_equal", "less_than"):
        text = f"{value} is above the maximum {_number(ctx.get('le', ctx.get('lt')))}"
    elif kind in ("greater_than_equal", "greater_than"):
        text = f"{value} is below the minimum {_number(ctx.get('ge', ctx.get('gt')))}"
    elif kind == "literal_error":
        text = f"must be one of {ctx['expected']}, got {value!r:.80}"
    elif kind == "string_pattern_mismatch":
        text = f"{value!r:.80} does not match {ctx['pattern']}"
    elif kind == "string_too_long":
        text = f"longer than {ctx['max_length']} characters"
    elif kind == "too_short":
        text = f"needs at least {ctx['min_length']} items"
    elif kind == "too_long":
        text = f"allows at most {ctx['max_length']} {'keys' if isinstance(value, dict) else 'items'}"
    elif kind == "finite_number":
        text = "must be a finite number"
    elif kind == "value_error":
        text = str(ctx.get("error", e["msg"]))
    elif kind in _EXPECTED:
        text = f"must be {_EXPECTED[kind]}, got {_JSON_TYPES.get(type(value), type(value).__name__)}"
    else:
        text = e["msg"]
    return ContractError(text, _path(e["loc"]))


def check(message: Any, schema_id: str | None = None) -> Message:
    """A decoded JSON object as the message its ``schema`` names (the model), or :class:`ContractError`."""
    if not isinstance(message, dict):
        raise ContractError(f"a message must be a JSON object, got {type(message).__name__}")
    sid = message.get("schema")
    if schema_id is not None and sid != schema_id:
        raise ContractError(f"expected {schema_id!r}, got {sid!r:.80}", "schema")
    if not isinstance(sid, str) or sid not in MESSAGES:
        raise ContractError(f"unknown schema {sid!r:.80}; this software knows {sorted(MESSAGES)}", "schema")
    return MESSAGES[sid].check(message)


def validate(message: Any, schema_id: str | None = None) -> dict[str, Any]:
    """Check a decoded message against its model; return it as sent or raise :class:`ContractError`."""
    return check(message, schema_id).wire()


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


def encode(message: Message | dict[str, Any]) -> bytes:
    """Check and serialize a message (compact JSON)."""
    return (message if isinstance(message, Message) else check(message)).encode()


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
    """The model as a standalone JSON Schema document (what docs/contract/*.json hold)."""
    model = MESSAGES[schema_id]
    schema = model.model_json_schema(by_alias=True)
    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id}
    doc["title"] = (model.__doc__ or schema_id).strip().splitlines()[0]
    doc.update({k: v for k, v in schema.items() if k not in ("title", "description")})
    return _untitled(doc)


def _untitled(node: Any, top: bool = True) -> Any:
    """Drop pydantic's generated ``title`` of every field and part ("Device Id") and the ``default``
    of optional fields (left out means absent on the wire, not null): noise or misleading in the files."""
    if isinstance(node, dict):
        return {k: _untitled(v, False) for k, v in node.items() if top or k not in ("title", "default")}
    if isinstance(node, list):
        return [_untitled(v, False) for v in node]
    return node
