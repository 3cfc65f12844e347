"""Pydantic model source from an inferred JSON Schema (``gateway.schema_infer``).

``gateway scaffold`` writes the response model of a new handler from what the legacy view was
recorded answering, so the handler's contract starts as the view's real one::

    model = model_source(schema, "ListUsersResponse")   # schema: from gateway.schema_infer
    model.source       # "class User(BaseModel): ...\n\n\nclass ListUsersResponse(BaseModel): ..."
    model.annotation   # "ListUsersResponse"

Written here rather than with datamodel-code-generator: that tool is a large dependency (and
a code formatter) for the dozen lines this shape of schema needs, and its output would still
need the names and layout of the generated module around it.
"""

from __future__ import annotations

import json
import keyword
import re
from dataclasses import dataclass, field
from typing import Any

_SCALARS = {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "null": "None"}


@dataclass
class _Writer:
    classes: list[str] = field(default_factory=list)
    names: set[str] = field(default_factory=set)
    #: Whether any field needed ``Field(alias=...)`` or ``Any``.
    uses_field: bool = False
    uses_any: bool = False

    def class_name(self, hint: str) -> str:
        parts = re.split(r"[^A-Za-z0-9]+", hint)
        base = "".join(part[0].upper() + part[1:] for part in parts if part)
        base = base if base and base[0].isalpha() else f"Model{base}"
        name, number = base, 2
        while name in self.names:
            name, number = f"{base}{number}", number + 1
        self.names.add(name)
        return name

    def annotation(self, schema: dict[str, Any], hint: str) -> str:
        kinds = schema.get("type")
        if kinds is None:
            self.uses_any = True
            return "Any"
        parts = [self._one(kind, schema, hint) for kind in _as_list(kinds)]
        return " | ".join(dict.fromkeys(parts))

    def _one(self, kind: str, schema: dict[str, Any], hint: str) -> str:
        if kind == "object":
            properties = schema.get("properties") or {}
            if not properties:
                self.uses_any = True
                return "dict[str, Any]"
            return self._model(properties, set(schema.get("required", ())), hint)
        if kind == "array":
            items = schema.get("items")
            if not items:
                self.uses_any = True
                return "list[Any]"
            return f"list[{self.annotation(items, _singular(hint))}]"
        return _SCALARS.get(kind, "Any")

    def _model(self, properties: dict[str, Any], required: set[str], hint: str) -> str:
        name = self.class_name(hint)
        lines = [f"class {name}(BaseModel):"]
        for key, schema in properties.items():
            annotation = self.annotation(schema, key)
            default = ""
            if key not in required:
                if "None" not in annotation.split(" | "):
                    annotation = f"{annotation} | None"
                default = "None"
            attribute = _attribute(key)
            if attribute != key:
                self.uses_field = True
                default_arg = f"default={default}, " if default else ""
                default = f"Field({default_arg}alias={json.dumps(key)})"
            lines.append(f"    {attribute}: {annotation}" + (f" = {default}" if default else ""))
        if any(_attribute(key) != key for key in properties):
            lines.insert(1, "    model_config = ConfigDict(populate_by_name=True)")
        self.classes.append("\n".join(lines))
        return name


@dataclass(frozen=True, slots=True)
class ModelSource:
    #: The classes, nested ones first, separated by two blank lines.
    source: str
    #: The response's type: a class name, or ``list[Book]`` for an array body.
    annotation: str
    #: Names to import from pydantic / typing besides ``BaseModel``.
    pydantic_imports: tuple[str, ...]
    uses_any: bool


def model_source(schema: dict[str, Any], name: str) -> ModelSource:
    writer = _Writer()
    annotation = writer.annotation(schema, name)
    extra = []
    if writer.uses_field:
        extra = ["ConfigDict", "Field"]
    return ModelSource(
        source="\n\n\n".join(writer.classes),
        annotation=annotation,
        pydantic_imports=tuple(extra),
        uses_any=writer.uses_any,
    )


def _as_list(kinds: Any) -> list[str]:
    return [kinds] if isinstance(kinds, str) else list(kinds)


def _attribute(key: str) -> str:
    """A Python attribute name for a JSON key (``class`` → ``class_``, ``a-b`` → ``a_b``)."""
    name = re.sub(r"\W", "_", key) or "field"
    if name[0].isdigit():
        name = f"field_{name}"
    if keyword.iskeyword(name) or name.startswith("_") or name in ("model_config", "model_fields"):
        name = f"{name.strip('_') or 'field'}_"
    return name


def _singular(hint: str) -> str:
    if hint.endswith("ies"):
        return hint[:-3] + "y"
    if hint.endswith("s") and not hint.endswith("ss"):
        return hint[:-1]
    return f"{hint}_item"
