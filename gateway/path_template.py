"""Path templates: the gateway's one spelling of a route path, and conversions into it.

A template is FastAPI's spelling with an optional converter: ``/api/books/{book_id:int}``.
Converters: ``str`` (one non-empty segment, the default), ``int`` (decimal digits of any script,
as Werkzeug's ``int`` reads them) and ``path`` (the rest of the path, last segment only). Flask
rules convert into it
(``/api/books/<int:book_id>`` becomes ``/api/books/{book_id:int}``), and every template has a
*shape* with the names erased (``/api/books/{}``), which is how the gateway compares a configured
route with what a Flask rule or a FastAPI route declares.

    >>> parse_template("/api/books/{book_id:int}")
    (Static(text='api'), Static(text='books'), Param(name='book_id', converter='int'))
    >>> shape("/api/books/{book_id:int}") == shape("/api/books/{id}")
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Converter = Literal["str", "int", "path"]
CONVERTERS: tuple[Converter, ...] = ("str", "int", "path")

_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}$")
_FLASK_PARAM = re.compile(r"<(?:([a-zA-Z_][a-zA-Z0-9_]*)(?:\([^)]*\))?:)?([a-zA-Z_][a-zA-Z0-9_]*)>")
_ANY_PARAM = re.compile(r"\{[^}]*\}")


@dataclass(frozen=True, slots=True)
class Static:
    text: str


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    converter: Converter


Segment = Static | Param


def parse_template(template: str) -> tuple[Segment, ...]:
    """Split a template into segments; raises ``ValueError`` with a readable reason."""
    if not template.startswith("/"):
        raise ValueError("must start with '/'")
    parts = template[1:].split("/")
    segments: list[Segment] = []
    names: set[str] = set()
    for index, part in enumerate(parts):
        if "{" not in part and "}" not in part:
            if part in (".", "..") or (part == "" and index != len(parts) - 1):
                raise ValueError(f"segment {index + 1} ({part!r}) is empty or a dot segment")
            segments.append(Static(part))
            continue
        found = _PARAM.match(part)
        if found is None:
            raise ValueError(f"segment {part!r} must be a whole '{{name}}' or '{{name:converter}}'")
        name, converter = found.group(1), found.group(2) or "str"
        if converter not in CONVERTERS:
            raise ValueError(
                f"unknown converter {converter!r} in {part!r} (use one of {', '.join(CONVERTERS)})"
            )
        if converter == "path" and index != len(parts) - 1:
            raise ValueError(f"'{{{name}:path}}' must be the last segment")
        if name in names:
            raise ValueError(f"parameter {name!r} appears twice")
        names.add(name)
        segments.append(Param(name, converter))
    return tuple(segments)


def shape(template: str) -> str:
    """The template with parameter names and converters erased: ``/api/books/{}``."""
    return _ANY_PARAM.sub("{}", template)


def from_flask_rule(rule: str) -> str:
    """Convert a Werkzeug rule string into a gateway template.

    Converters the gateway does not know (``float``, ``uuid``, ``any(...)``, custom ones) become
    plain ``str`` segments: the template is used for labelling legacy routes, never to decide
    that a request leaves the legacy app.
    """

    def convert(found: re.Match[str]) -> str:
        converter, name = found.group(1), found.group(2)
        if converter in ("int", "path"):
            return f"{{{name}:{converter}}}"
        return f"{{{name}}}"

    return _FLASK_PARAM.sub(convert, rule)
