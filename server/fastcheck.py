"""A compiled form of the contract's JSON Schemas, for the collector's ingest rate.

``amgs.contract.validate`` walks a schema dict recursively and builds a field path for every value it
visits, which costs ~150 us per score record: the collector's single writer would top out near 5,000
msg/s on validation alone. :func:`decode` compiles each schema in ``amgs.contract.SCHEMAS`` once into
nested closures that only answer valid / invalid (a few us). Whenever the compiled check says invalid,
the contract's own validator is run to produce the error message (and to be the final word), so the
schemas and the error wording stay defined in one place; ``tests/test_server_fastcheck.py`` checks the
two agree on thousands of generated messages.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from amgs import contract

Check = Callable[[Any], bool]


def _type_check(names: list[str]) -> Check:
    def one(name: str) -> Check:
        if name == "string":
            return lambda v: isinstance(v, str)
        if name == "boolean":
            return lambda v: isinstance(v, bool)
        if name == "object":
            return lambda v: isinstance(v, dict)
        if name == "array":
            return lambda v: isinstance(v, list)
        if name == "null":
            return lambda v: v is None
        if name == "integer":
            return lambda v: (
                (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
            )
        if name == "number":
            return lambda v: (
                (isinstance(v, int) and not isinstance(v, bool))
                or (isinstance(v, float) and math.isfinite(v))
            )
        raise ValueError(f"unsupported type {name!r}")

    checks = [one(n) for n in names]
    if len(checks) == 1:
        return checks[0]
    return lambda v: any(c(v) for c in checks)


def _is_number(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and math.isfinite(v))


def compile_schema(schema: dict[str, Any]) -> Check:
    """Compile the JSON Schema subset ``amgs.contract`` uses into one predicate."""
    checks: list[Check] = []
    if "const" in schema:
        const = schema["const"]
        checks.append(lambda v: not (v != const))
    if "enum" in schema:
        enum = schema["enum"]
        checks.append(lambda v: v in enum)
    if "oneOf" in schema:
        options = [compile_schema(o) for o in schema["oneOf"]]
        checks.append(lambda v: any(o(v) for o in options))
    if "type" in schema:
        names = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
        checks.append(_type_check(names))
    max_len, pattern = schema.get("maxLength"), schema.get("pattern")
    if max_len is not None or pattern is not None:
        rx = re.compile(pattern) if pattern is not None else None
        limit = max_len if max_len is not None else math.inf
        checks.append(
            lambda v: not isinstance(v, str) or (len(v) <= limit and (rx is None or rx.search(v) is not None))
        )
    lo, hi = schema.get("minimum"), schema.get("maximum")
    if lo is not None or hi is not None:
        lo_ = -math.inf if lo is None else lo
        hi_ = math.inf if hi is None else hi
        checks.append(lambda v: not _is_number(v) or lo_ <= v <= hi_)
    if any(k in schema for k in ("minItems", "maxItems", "items")):
        mn, mx = schema.get("minItems", 0), schema.get("maxItems", math.inf)
        item = compile_schema(schema["items"]) if "items" in schema else None
        checks.append(
            lambda v: (
                not isinstance(v, list) or (mn <= len(v) <= mx and (item is None or all(item(x) for x in v)))
            )
        )
    if any(k in schema for k in ("required", "maxProperties", "properties", "additionalProperties")):
        required = tuple(schema.get("required", ()))
        max_props = schema.get("maxProperties", math.inf)
        props = {k: compile_schema(s) for k, s in schema.get("properties", {}).items()}
        extra = schema.get("additionalProperties", True)
        extra_check = compile_schema(extra) if isinstance(extra, dict) else None

        def check_object(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for key in required:
                if key not in v:
                    return False
            if len(v) > max_props:
                return False
            for key, item in v.items():
                sub = props.get(key)
                if sub is not None:
                    if not sub(item):
                        return False
                elif extra is False:
                    return False
                elif extra_check is not None and not extra_check(item):
                    return False
            return True

        checks.append(check_object)

    def check(v: Any) -> bool:
        for c in checks:
            if not c(v):
                return False
        return True

    return check


_COMPILED: dict[str, Check] = {sid: compile_schema(s) for sid, s in contract.SCHEMAS.items()}


def decode(payload: bytes, schema_id: str) -> dict[str, Any]:
    """Same contract as :func:`amgs.contract.decode` with a known ``schema_id``, faster on valid input."""
    if len(payload) <= contract.MAX_PAYLOAD_BYTES:
        try:
            message = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            message = None
        if isinstance(message, dict) and message.get("schema") == schema_id and _COMPILED[schema_id](message):
            return message
    return contract.decode(payload, schema_id)  # the authoritative check and its error message
