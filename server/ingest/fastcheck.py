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

import math
import re
from collections.abc import Callable
from typing import Any

import orjson

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
        # exact types: the values come from a JSON decoder (bool is not an int here, as in JSON Schema)
        return {
            "string": f"type({v}) is str",
            "boolean": f"type({v}) is bool",
            "object": f"type({v}) is dict",
            "array": f"type({v}) is list",
            "null": f"{v} is None",
            "integer": f"(type({v}) is int or (type({v}) is float and {v}.is_integer()))",
            "number": f"(type({v}) is int or (type({v}) is float and _isfinite({v})))",
        }[name]

    def guard(self, known: str | None, name: str, v: str, d: int) -> int:
        """Emit ``if <v is a name>:`` unless the type check already ensured it; the depth to continue at."""
        if known == name or (name == "number" and known == "integer"):
            return d
        self.emit(d, f"if {self.type_expr(name, v)}:")
        return d + 1

    def schema(self, schema: dict[str, Any], v: str, d: int) -> None:
        if "const" in schema:
            self.emit(d, f"if {v} != {self.const(schema['const'])}: return False")
        if "enum" in schema:
            self.emit(d, f"if {v} not in {self.const(list(schema['enum']))}: return False")
        if "oneOf" in schema:
            options = [self.const(compile_schema(o)) for o in schema["oneOf"]]
            self.emit(d, f"if not ({' or '.join(f'{o}({v})' for o in options)}): return False")
        known = None
        if "type" in schema:
            names = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
            self.emit(d, f"if not ({' or '.join(self.type_expr(n, v) for n in names)}): return False")
            known = names[0] if len(names) == 1 else None
        if "maxLength" in schema or "pattern" in schema:
            e = self.guard(known, "string", v, d)
            if "maxLength" in schema:
                self.emit(e, f"if len({v}) > {int(schema['maxLength'])}: return False")
            if "pattern" in schema:
                rx = self.const(re.compile(schema["pattern"]))
                self.emit(e, f"if {rx}.search({v}) is None: return False")
        if "minimum" in schema or "maximum" in schema:
            e = self.guard(known, "number", v, d)
            if "minimum" in schema:
                self.emit(e, f"if {v} < {self.const(schema['minimum'])}: return False")
            if "maximum" in schema:
                self.emit(e, f"if {v} > {self.const(schema['maximum'])}: return False")
        if any(k in schema for k in ("minItems", "maxItems", "items")):
            e = self.guard(known, "array", v, d)
            if "minItems" in schema:
                self.emit(e, f"if len({v}) < {int(schema['minItems'])}: return False")
            if "maxItems" in schema:
                self.emit(e, f"if len({v}) > {int(schema['maxItems'])}: return False")
            if "items" in schema:
                item = self.var()
                self.emit(e, f"for {item} in {v}:")
                self.schema(schema["items"], item, e + 1)
        if any(k in schema for k in ("required", "maxProperties", "properties", "additionalProperties")):
            e = self.guard(known, "object", v, d)
            for key in schema.get("required", ()):
                self.emit(e, f"if {key!r} not in {v}: return False")
            if "maxProperties" in schema:
                self.emit(e, f"if len({v}) > {int(schema['maxProperties'])}: return False")
            props = schema.get("properties", {})
            for key, sub in props.items():
                item = self.var()
                self.emit(e, f"{item} = {v}.get({key!r}, _MISSING)")
                self.emit(e, f"if {item} is not _MISSING:")
                self.emit(e + 1, "pass")
                self.schema(sub, item, e + 1)
            extra = schema.get("additionalProperties", True)
            known_keys = self.const(frozenset(props))
            if extra is False:
                self.emit(e, f"if not {known_keys}.issuperset({v}): return False")
            elif isinstance(extra, dict):
                key, item = self.var(), self.var()
                self.emit(e, f"for {key}, {item} in {v}.items():")
                self.emit(e + 1, f"if {key} in {known_keys}: continue")
                self.schema(extra, item, e + 1)


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
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            message = None
        if isinstance(message, dict) and message.get("schema") == schema_id and _COMPILED[schema_id](message):
            return message
    return contract.decode(payload, schema_id)  # the authoritative check and its error message
