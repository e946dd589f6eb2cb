"""Turning pydantic's validation errors into messages that say what is allowed."""

from __future__ import annotations

from typing import Any

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

_ENTRY_HEAD = {"name", "kind", "meta", "lifecycle"}  # accepted beside every kind's own fields


def explain(error: ErrorDetails, model: type[BaseModel]) -> str:
    """One sentence for one error: the problem, the allowed values, what was given."""
    kind, loc = error["type"], error["loc"]
    given = _short(error.get("input"))
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        fields = _names(parent) | _ENTRY_HEAD if parent is model else set()
        fields |= _names(parent) if parent else set()
        allowed = f"; allowed: {', '.join(sorted(fields))}" if fields else ""
        return f"unknown field{allowed}"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        bounds = _bounds(model, loc)
        if bounds == ("-inf", "inf"):
            bounds = None
        if bounds is not None and bounds[1] == "inf":
            return f"must be at least {bounds[0]} (got {given})"
        if bounds is not None and bounds[0] == "-inf":
            return f"must be at most {bounds[1]} (got {given})"
        if bounds is not None:
            return f"must be between {bounds[0]} and {bounds[1]} (got {given})"
    if kind == "literal_error":
        return f"must be {error.get('ctx', {}).get('expected', '')} (got {given})"
    message = error["msg"].removeprefix("Value error, ")
    message = f"{message[0].lower()}{message[1:]}"
    return message if f"got {given}" in message else f"{message} (got {given})"


def _names(model: type[BaseModel]) -> set[str]:
    """Field names as a config file writes them (a field's alias, where it has one)."""
    return {field.alias or name for name, field in model.model_fields.items()}


def _field(model: type[BaseModel], part: Any) -> FieldInfo | None:
    """The field a config key names, by name or by alias."""
    if not isinstance(part, str):
        return None
    found = model.model_fields.get(part)
    if found is None:
        found = next((f for f in model.model_fields.values() if f.alias == part), None)
    return found


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    current: type[BaseModel] | None = model
    for part in loc:
        field = _field(current, part) if current is not None else None
        if field is None:
            return None
        annotation = field.annotation
        candidates = getattr(annotation, "__args__", (annotation,))
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
    return current


def _bounds(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, Any] | None:
    parent = _model_at(model, loc[:-1])
    field = _field(parent, loc[-1]) if parent is not None else None
    if field is None:
        return None
    low: Any = None
    high: Any = None
    for item in field.metadata:
        if isinstance(item, annotated_types.Ge | annotated_types.Gt):
            low = getattr(item, "ge", getattr(item, "gt", None))
        if isinstance(item, annotated_types.Le | annotated_types.Lt):
            high = getattr(item, "le", getattr(item, "lt", None))
    if low is None and high is None:
        return None
    return (low if low is not None else "-inf", high if high is not None else "inf")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
