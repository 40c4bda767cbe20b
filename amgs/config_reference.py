"""Configuration references generated from the pydantic models themselves (``Field(description=...)``).

docs/server.md and docs/device.md embed :func:`markdown_table` through cog (``cog -r docs/*.md``); a test
runs ``cog --check`` so a setting added, renamed or re-described in code cannot be missing from the docs.
"""

from __future__ import annotations

import datetime as dt
import json
import types
import typing
from pathlib import Path
from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The model of a nested section (``X``, ``X | None`` or ``list[X]``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return _section_model(item)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(models) == 1 and type(None) in typing.get_args(annotation):
            return models[0]
    return None


def _value(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dt.time):
        return v.strftime("%H:%M")
    if isinstance(v, Path | str):
        return f'`"{v}"`' if str(v) else '`""`'
    if isinstance(v, BaseModel):
        return "see below"
    if isinstance(v, list | tuple | dict):
        return f"`{json.dumps(v, default=str)}`"
    return f"`{v}`"


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return _value(field.default_factory())
    if field.default is PydanticUndefined:
        return "required"
    return _value(field.default)


def _allowed(field: FieldInfo) -> str:
    """Bounds and choices, as the validator enforces them."""
    parts = []
    for m in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if isinstance(m, getattr(annotated_types, attr.capitalize())):
                parts.append(f"{sign} {getattr(m, attr)}")
    annotation = field.annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next((a for a in typing.get_args(annotation) if a is not type(None)), annotation)
    if typing.get_origin(annotation) is typing.Literal and len(typing.get_args(annotation)) > 1:
        parts.append("one of " + ", ".join(_value(x) for x in typing.get_args(annotation)))
    return f" ({'; '.join(parts)})" if parts else ""


def reference_rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str]]:
    """``(key, default, meaning)`` for every setting of ``model``, nested sections as dotted keys."""
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        section = _section_model(field.annotation)
        if section is not None:
            about = field.description or " ".join((section.__doc__ or "").split("\n\n")[0].split())
            about = about.replace("``", "`")
            if typing.get_origin(field.annotation) is list:
                rows.append((f"[[{key}]]", "none", about.replace("|", "\\|")))
                rows.extend(reference_rows(section, key + "[]."))
                continue
            default = "none: set it to use it" if field.default is None else ""
            if about or default:
                rows.append((f"[{key}]", default, about.replace("|", "\\|")))
            rows.extend(reference_rows(section, key + "."))
            continue
        meaning = (field.description or "").replace("|", "\\|")
        rows.append((f"`{key}`", _default(field), meaning + _allowed(field)))
    return rows


def markdown_table(model: type[BaseModel]) -> str:
    """The reference as a markdown table (one row per setting)."""
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key, default, meaning in reference_rows(model):
        if not key.startswith("`"):
            key = f"`{key}`"
        lines.append(f"| {key} | {default} | {meaning} |")
    return "\n".join(lines) + "\n"
