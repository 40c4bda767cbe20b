"""Study metadata: sites, rooms, cages, devices and their cage assignments, groups, animals, events.

One pydantic model per kind validates a record whichever way it comes in (CLI options, API JSON
body, a CSV row), so the same rules and the same error wording apply everywhere. CSV import is
all-or-nothing: every row is checked first and errors name the file, the line, the column and the value.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from amgs.config_errors import format_errors
from amgs.contract import ID_PATTERN, format_time
from amgs.server.storage import sql
from amgs.sqlite_tx import write_transaction

from .params import MAX_TIME, MIN_TIME

EVENT_KINDS = ("surgery", "analgesic", "anaesthesia", "handling", "weight", "other")
"""What an event can be (surgery, analgesic, ...): the study timeline the time courses align to."""


class MetadataError(ValueError):
    """A metadata record is invalid or refers to something that does not exist."""


Id = Field(pattern=ID_PATTERN, description="1-64 letters, digits, '_', '.', '-'")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SiteIn(_Record):
    site_id: str = Id
    name: str | None = None
    notes: str | None = None


class RoomIn(_Record):
    room_id: str = Id
    site_id: str | None = Field(None, pattern=ID_PATTERN)
    name: str | None = None
    notes: str | None = None


class CageIn(_Record):
    cage_id: str = Id
    site_id: str | None = Field(None, pattern=ID_PATTERN)
    room_id: str | None = Field(None, pattern=ID_PATTERN)
    name: str | None = None
    notes: str | None = None


class GroupIn(_Record):
    group_id: str = Id
    name: str | None = None
    description: str | None = None
    study: str | None = None


class AnimalIn(_Record):
    animal_id: str = Id
    cage_id: str | None = Field(None, pattern=ID_PATTERN)
    group_id: str | None = Field(None, pattern=ID_PATTERN)
    strain: str | None = None
    sex: Literal["F", "M", "unknown"] = "unknown"
    coat: str | None = None
    housing: Literal["single", "group"] = "group"
    born: dt.date | None = None
    notes: str | None = None

    @field_validator("sex", mode="before")
    @classmethod
    def _sex(cls, v: Any) -> Any:
        return {"f": "F", "female": "F", "m": "M", "male": "M"}.get(str(v).strip().lower(), v) if v else v


class DeviceIn(_Record):
    device_id: str = Id
    site: str | None = Field(None, pattern=ID_PATTERN)
    notes: str | None = None


class EventIn(_Record):
    kind: Literal[EVENT_KINDS]  # type: ignore[valid-type]
    at: dt.datetime = Field(
        description="when; without a zone it is the facility's local time (photoperiod.timezone)"
    )
    animal_id: str | None = Field(None, pattern=ID_PATTERN)
    cage_id: str | None = Field(None, pattern=ID_PATTERN)
    value: float | None = Field(None, description="dose, weight, ...")
    unit: str | None = None
    notes: str | None = None


class AssignmentIn(_Record):
    device_id: str = Id
    cage_id: str = Id
    view: str | None = Field(None, pattern=ID_PATTERN)
    start: dt.datetime
    end: dt.datetime | None = None
    notes: str | None = None


KINDS: dict[str, tuple[type[_Record], str, str | None]] = {
    # kind -> (model, table, primary key or None for rows with an integer id)
    "sites": (SiteIn, "sites", "site_id"),
    "rooms": (RoomIn, "rooms", "room_id"),
    "cages": (CageIn, "cages", "cage_id"),
    "groups": (GroupIn, "groups", "group_id"),
    "animals": (AnimalIn, "animals", "animal_id"),
    "devices": (DeviceIn, "devices", "device_id"),
    "events": (EventIn, "events", None),
    "assignments": (AssignmentIn, "device_assignments", None),
}


def validate(kind: str, data: dict[str, Any]) -> _Record:
    if kind not in KINDS:
        raise MetadataError(f"unknown metadata kind {kind!r}; use one of {sorted(KINDS)}")
    model = KINDS[kind][0]
    try:
        return model.model_validate({k: v for k, v in data.items() if v not in ("", None)})
    except ValidationError as e:
        raise MetadataError(format_errors(e, model, noun="column")) from None


def _epoch(t: dt.datetime, tz: dt.tzinfo, name: str) -> float:
    value = (t if t.tzinfo else t.replace(tzinfo=tz)).timestamp()
    if not MIN_TIME <= value < MAX_TIME:  # a time course could never be drawn around it
        raise MetadataError(
            f"{name} = {t.isoformat()!r}: outside the times the collector holds (1970 .. 2100)"
        )
    return value


def to_row(record: _Record, tz: dt.tzinfo = dt.UTC) -> dict[str, Any]:
    """A validated record -> the table row."""
    data = record.model_dump()
    if isinstance(record, EventIn):
        if not record.animal_id and not record.cage_id:
            raise MetadataError("an event needs an animal_id or a cage_id")
        t = _epoch(record.at, tz, "at")
        data.update(t=t, at=format_time(dt.datetime.fromtimestamp(t, dt.UTC)), created_at=time.time())
    elif isinstance(record, AssignmentIn):
        data["start_t"] = _epoch(data.pop("start"), tz, "start")
        end = data.pop("end")
        data["end_t"] = None if end is None else _epoch(end, tz, "end")
        if data["end_t"] is not None and data["end_t"] <= data["start_t"]:
            raise MetadataError("assignment end must be after its start")
    elif isinstance(record, AnimalIn) and record.born is not None:
        data["born"] = record.born.isoformat()
    elif isinstance(record, DeviceIn):
        data["registered"] = 1
    return data


def save(conn, kind: str, data: dict[str, Any] | _Record, tz: dt.tzinfo = dt.UTC) -> dict[str, Any]:
    """Validate and write one record (insert, or update the fields given of the record with the same id)."""
    record = data if isinstance(data, _Record) else validate(kind, data)
    row = to_row(record, tz)
    _, table, pk = KINDS[kind]
    cols = list(row)
    if pk is None:
        cur = conn.execute(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
            [row[c] for c in cols],
        )
        row["id"] = cur.lastrowid
    else:
        updates = (
            ", ".join(f"{c} = coalesce(excluded.{c}, {c})" for c in cols if c != pk)
            or f"{pk} = excluded.{pk}"
        )
        conn.execute(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
            f"ON CONFLICT ({pk}) DO UPDATE SET {updates}",
            [row[c] for c in cols],
        )
    return row


def delete(conn, kind: str, key: str | int) -> bool:
    _, table, pk = KINDS[kind]
    return conn.execute(f"DELETE FROM {table} WHERE {pk or 'id'} = ?", [key]).rowcount > 0


LIST_COLUMNS = {
    "devices": "device_id, site, registered, notes, state, state_since, last_seen, queue_depth, committed_seq, "
    "max_seq, scores_total, missing_open, lost_total, model_name, model_version",
}


def list_rows(
    conn, kind: str, where: dict[str, Any] | None = None, limit: int = 10000
) -> list[dict[str, Any]]:
    if kind not in KINDS:
        raise MetadataError(f"unknown metadata kind {kind!r}; use one of {sorted(KINDS)}")
    _, table, pk = KINDS[kind]
    clause, params = sql.where(where)
    columns = LIST_COLUMNS.get(kind, "*")
    query = f"SELECT {columns} FROM {table} {clause} ORDER BY {pk or 'id'} LIMIT ?"
    return list(sql.database(conn).query(query, [*params, limit]))


def import_csv(conn, kind: str, text: str, source: str = "CSV", tz: dt.tzinfo = dt.UTC) -> int:
    """Import every row of a CSV (header = field names) or nothing; returns the number of rows written."""
    if kind not in KINDS:
        raise MetadataError(f"unknown metadata kind {kind!r}; use one of {sorted(KINDS)}")
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if not reader.fieldnames:
        raise MetadataError(f"{source}: empty file (the first line must name the columns)")
    allowed = set(KINDS[kind][0].model_fields)
    unknown = [c for c in reader.fieldnames if c and c.strip() not in allowed]
    if unknown:
        raise MetadataError(f"{source}: unknown column(s) {unknown} for {kind}; allowed: {sorted(allowed)}")
    records, errors = [], []
    for line_no, raw in enumerate(reader, start=2):
        data = {k.strip(): v for k, v in raw.items() if k}
        if not any((v or "").strip() for v in data.values()):
            continue
        try:
            record = validate(kind, data)
            to_row(record, tz)
            records.append(record)
        except MetadataError as e:
            errors.append(f"{source} line {line_no}: {e}")
    if errors:
        raise MetadataError(
            "; ".join(errors[:20]) + (f"; ... {len(errors) - 20} more" if len(errors) > 20 else "")
        )
    with write_transaction(conn):
        for record in records:
            save(conn, kind, record, tz)
    return len(records)
