"""A JSON Schema (2020-12, the dialect of OpenAPI 3.1) that every given JSON value satisfies.

Used for response schemas inferred from recorded samples: the merged OpenAPI document shows
them for legacy routes, and ``gateway scaffold`` turns them into pydantic models::

    infer_schema([{"id": 1, "tags": []}, {"id": 2, "tags": ["x"], "note": None}])
    # {"type": "object", "properties": {"id": {"type": "integer"}, "tags": {"type": "array",
    #  "items": {"type": "string"}}, "note": {"type": "null"}}, "required": ["id", "tags"]}

Written here rather than taken from a library: genson (the usual choice) emits draft-04
``"type"`` lists without the ``required`` intersection we want and is unmaintained; this is
forty lines of merging.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

_TYPE_ORDER = ("object", "array", "string", "integer", "number", "boolean", "null")


def infer_schema(values: Iterable[Any]) -> dict[str, Any]:
    """The narrowest schema of this shape for ``values``; ``{}`` (anything) when there are none."""
    schema: dict[str, Any] = {}
    for value in values:
        schema = merge_schemas(schema, _schema_of(value)) if schema else _schema_of(value)
    return schema


def _schema_of(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {
            "type": "object",
            "properties": {key: _schema_of(item) for key, item in value.items()},
            "required": sorted(value),
        }
    if isinstance(value, list):
        items = infer_schema(value)
        return {"type": "array", "items": items} if items else {"type": "array"}
    return {"type": _json_type(value)}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def merge_schemas(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    """A schema both inputs' values satisfy (types united, object keys required by both)."""
    types = _types(left) | _types(right)
    if {"integer", "number"} <= types:
        types.discard("integer")  # JSON Schema's number includes the integers
    merged: dict[str, Any] = {}
    if "object" in types:
        left_props, right_props = left.get("properties", {}), right.get("properties", {})
        merged["properties"] = {
            key: merge_schemas(left_props[key], right_props[key])
            if key in left_props and key in right_props
            else left_props.get(key) or right_props[key]
            for key in {**left_props, **right_props}
        }
        required = set(left.get("required", [])) if "object" in _types(left) else None
        if "object" in _types(right):
            right_required = set(right.get("required", []))
            required = right_required if required is None else required & right_required
        merged["required"] = sorted(required or ())
    if "array" in types:
        items = [side["items"] for side in (left, right) if "items" in side]
        if items:
            merged["items"] = merge_schemas(items[0], items[1]) if len(items) == 2 else items[0]
    ordered = [name for name in _TYPE_ORDER if name in types]
    return {"type": ordered[0] if len(ordered) == 1 else ordered, **merged}


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    if kind is None:
        return set()
    return {kind} if isinstance(kind, str) else set(kind)
