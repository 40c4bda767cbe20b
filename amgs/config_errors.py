"""One wording for what pydantic refused in a config file or a record, wherever it is read.

Every problem names the key (dotted path), the value given and what is wrong with it, or, for a key
the model does not have, the keys allowed at that place::

    mqtt.port = 0: Input should be greater than or equal to 1
    unknown key 'mqtt.hots' (allowed here: host, port, ...)

Used by the collector's and the device's config loaders, provisioning and study-metadata import.
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["format_errors", "problems"]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds: itself, or inside ``list[...]``, ``X | None``, ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def allowed_keys(model: type[BaseModel] | None, path: Sequence[Any]) -> list[str]:
    """The field names of the (sub-)model found at ``path`` below ``model`` ([] if it cannot be told)."""
    for part in path:
        if model is None:
            return []
        if isinstance(part, int):  # an item of a list of models: same model
            continue
        field = model.model_fields.get(str(part))
        model = _model_in(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def problems(
    err: ValidationError, model: type[BaseModel] | None = None, *, noun: str = "key", width: int = 80
) -> list[str]:
    """One line per problem (``model`` is the validated model, for the allowed keys of an unknown one)."""
    out = []
    for e in err.errors():
        loc = e["loc"]
        key = ".".join(str(p) for p in loc)
        if e["type"] == "extra_forbidden":
            allowed = allowed_keys(model, loc[:-1])
            out.append(
                f"unknown {noun} {key!r}" + (f" (allowed here: {', '.join(allowed)})" if allowed else "")
            )
            continue
        value = e.get("input")
        shown = "" if isinstance(value, dict) or not loc else f" = {value!r:.{width}}"
        out.append(f"{key or '(top level)'}{shown}: {e['msg']}")
    return out


def format_errors(
    err: ValidationError,
    model: type[BaseModel] | None = None,
    *,
    noun: str = "key",
    sep: str = "; ",
    width: int = 80,
) -> str:
    """:func:`problems` joined by ``sep``."""
    return sep.join(problems(err, model, noun=noun, width=width))
