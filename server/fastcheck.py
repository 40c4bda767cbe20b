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


class _Gen:
    """Generates the source of one flat Python function per schema (like fastjsonschema, for this subset)."""

    def __init__(self) -> None:
        self.constants: dict[str, Any] = {"_isfinite": math.isfinite}
        self.lines: list[str] = []
        self.counter = 0

    def const(self, value: Any) -> str:
        name = f"_c{len(self.constants)}"
        self.constants[name] = value
        return name

    def var(self) -> str:
        self.counter += 1
        return f"v{self.counter}"

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    @staticmethod
    def type_expr(name: str, v: str) -> str:
        return {
            "string": f"isinstance({v}, str)",
            "boolean": f"isinstance({v}, bool)",
            "object": f"isinstance({v}, dict)",
            "array": f"isinstance({v}, list)",
            "null": f"{v} is None",
            "integer": f"((isinstance({v}, int) and not isinstance({v}, bool)) or (isinstance({v}, float) and {v}.is_integer()))",
            "number": f"((isinstance({v}, int) and not isinstance({v}, bool)) or (isinstance({v}, float) and _isfinite({v})))",
        }[name]

    def schema(self, schema: dict[str, Any], v: str, d: int) -> None:
        if "const" in schema:
            self.emit(d, f"if {v} != {self.const(schema['const'])}: return False")
        if "enum" in schema:
            self.emit(d, f"if {v} not in {self.const(list(schema['enum']))}: return False")
        if "oneOf" in schema:
            options = [self.const(compile_schema(o)) for o in schema["oneOf"]]
            self.emit(d, f"if not ({' or '.join(f'{o}({v})' for o in options)}): return False")
        if "type" in schema:
            names = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
            self.emit(d, f"if not ({' or '.join(self.type_expr(n, v) for n in names)}): return False")
        if "maxLength" in schema or "pattern" in schema:
            self.emit(d, f"if isinstance({v}, str):")
            if "maxLength" in schema:
                self.emit(d + 1, f"if len({v}) > {int(schema['maxLength'])}: return False")
            if "pattern" in schema:
                rx = self.const(re.compile(schema["pattern"]))
                self.emit(d + 1, f"if {rx}.search({v}) is None: return False")
        if "minimum" in schema or "maximum" in schema:
            self.emit(d, f"if {self.type_expr('number', v)}:")
            if "minimum" in schema:
                self.emit(d + 1, f"if {v} < {self.const(schema['minimum'])}: return False")
            if "maximum" in schema:
                self.emit(d + 1, f"if {v} > {self.const(schema['maximum'])}: return False")
        if any(k in schema for k in ("minItems", "maxItems", "items")):
            self.emit(d, f"if isinstance({v}, list):")
            if "minItems" in schema:
                self.emit(d + 1, f"if len({v}) < {int(schema['minItems'])}: return False")
            if "maxItems" in schema:
                self.emit(d + 1, f"if len({v}) > {int(schema['maxItems'])}: return False")
            if "items" in schema:
                item = self.var()
                self.emit(d + 1, f"for {item} in {v}:")
                self.schema(schema["items"], item, d + 2)
        if any(k in schema for k in ("required", "maxProperties", "properties", "additionalProperties")):
            self.emit(d, f"if isinstance({v}, dict):")
            for key in schema.get("required", ()):
                self.emit(d + 1, f"if {key!r} not in {v}: return False")
            if "maxProperties" in schema:
                self.emit(d + 1, f"if len({v}) > {int(schema['maxProperties'])}: return False")
            props = schema.get("properties", {})
            for key, sub in props.items():
                item = self.var()
                self.emit(d + 1, f"{item} = {v}.get({key!r}, _MISSING)")
                self.emit(d + 1, f"if {item} is not _MISSING:")
                self.emit(d + 2, "pass")
                self.schema(sub, item, d + 2)
            extra = schema.get("additionalProperties", True)
            known = self.const(frozenset(props))
            if extra is False:
                self.emit(d + 1, f"if not {known}.issuperset({v}): return False")
            elif isinstance(extra, dict):
                key, item = self.var(), self.var()
                self.emit(d + 1, f"for {key}, {item} in {v}.items():")
                self.emit(d + 2, f"if {key} in {known}: continue")
                self.schema(extra, item, d + 2)


_MISSING = object()


def compile_schema(schema: dict[str, Any]) -> Check:
    """Compile the JSON Schema subset ``amgs.contract`` uses into one predicate (generated source)."""
    gen = _Gen()
    gen.emit(0, "def check(v0):")
    gen.schema(schema, "v0", 1)
    gen.emit(1, "return True")
    namespace: dict[str, Any] = {**gen.constants, "_MISSING": _MISSING}
    exec("\n".join(gen.lines), namespace)  # noqa: S102 - source generated above from the contract's schema
    return namespace["check"]


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
