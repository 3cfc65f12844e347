"""Find a Flask rule in the legacy app's ``url_map`` and say what FastAPI needs to serve it.

Werkzeug converters become FastAPI parameter types with the same limits, so the new handler
accepts exactly the paths the Flask view accepted::

    route = find_flask_route(flask_app, "GET", "/api/books/<int:book_id>")
    route.fastapi_path                  # "/api/books/{book_id}"
    route.params[0].annotation          # "int"
    route.view                          # "legacy_flask.books:get_book"

``<int(min=1, max=9):n>`` gives ``Annotated[int, Path(ge=1, le=9)]``, ``float`` gives
``float``, ``uuid`` gives ``uuid.UUID``, ``path`` gives ``str`` in a ``{name:path}`` segment,
``any(a, b)`` gives ``Literal['a', 'b']``, and ``string(minlength=.., maxlength=..,
length=..)`` gives ``Annotated[str, Path(min_length=.., max_length=..)]``.
"""

from __future__ import annotations

import difflib
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from werkzeug.routing import (
    AnyConverter,
    FloatConverter,
    IntegerConverter,
    PathConverter,
    UnicodeConverter,
    UUIDConverter,
    parse_converter_args,
)

from gateway.path_template import from_flask_rule, shape

#: ``<converter(arguments):name>``, as Werkzeug's rule parser reads a variable part.
_VARIABLE = re.compile(
    r"<(?:(?P<converter>[a-zA-Z_][a-zA-Z0-9_]*)(?:\((?P<args>.*?)\))?:)?(?P<name>[a-zA-Z_]\w*)>"
)
#: Methods every Flask rule answers on its own.
_IMPLICIT = frozenset({"HEAD", "OPTIONS"})


class RuleNotFound(LookupError):
    """No rule of the legacy app serves that method and path; the message lists near ones."""


@dataclass(frozen=True, slots=True)
class PathParam:
    name: str
    #: The parameter's annotation as source: ``int``, ``Annotated[int, Path(ge=1)]``.
    annotation: str
    #: How the FastAPI path spells it: ``{name}`` or ``{name:path}``.
    segment: str


@dataclass(frozen=True, slots=True)
class FlaskRoute:
    method: str
    #: Werkzeug's spelling: ``/api/books/<int:book_id>``.
    rule: str
    #: The gateway's spelling, for ``[[routes]] path``: ``/api/books/{book_id:int}``.
    template: str
    #: FastAPI's spelling: ``/api/books/{book_id}``.
    fastapi_path: str
    endpoint: str
    params: tuple[PathParam, ...]
    #: ``module:function`` of the view, when the app has one for the endpoint.
    view: str | None
    view_name: str
    docstring: str | None
    #: Where the view is defined: ``legacy_flask/admin.py:15``.
    source: str | None

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"


def flask_rule_labels(app: Any) -> list[str]:
    """``GET /admin/users`` for every method of every routable rule, for messages."""
    return [
        f"{method} {rule.rule}"
        for rule in app.url_map.iter_rules()
        if not rule.build_only
        for method in sorted((rule.methods or set()) - _IMPLICIT)
    ]


def find_flask_route(app: Any, method: str, text: str) -> FlaskRoute:
    """The rule of ``app`` serving ``method`` on ``text`` (a Flask rule or a gateway template);
    ``RuleNotFound`` naming the nearest rules when there is none."""
    url_map = getattr(app, "url_map", None)
    if url_map is None:
        raise RuleNotFound(f"the legacy app ({type(app).__name__}) is not a Flask app: no url_map")
    method = method.upper()
    wanted = shape(from_flask_rule(text.strip()))
    candidates = [
        rule
        for rule in url_map.iter_rules()
        if not rule.build_only
        and method in (rule.methods or ())
        and shape(from_flask_rule(rule.rule)) == wanted
    ]
    if not candidates:
        labels = flask_rule_labels(app)
        asked = f"{method} {text.strip()}"
        near = difflib.get_close_matches(asked, labels, n=3, cutoff=0.75)
        hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
        raise RuleNotFound(
            f"the legacy app has no rule for {asked!r}{hint} (`gateway routes` lists them all)"
        )
    exact = [rule for rule in candidates if rule.rule == text.strip()]
    rule = (exact or candidates)[0]
    return _describe(app, method, rule)


def _describe(app: Any, method: str, rule: Any) -> FlaskRoute:
    params = []
    fastapi_path = rule.rule
    for found in _VARIABLE.finditer(rule.rule):
        param = convert_variable(
            app.url_map.converters, found["name"], found["converter"], found["args"]
        )
        params.append(param)
        fastapi_path = fastapi_path.replace(found.group(0), param.segment, 1)
    view_function = getattr(app, "view_functions", {}).get(rule.endpoint)
    view, source, docstring = None, None, None
    view_name = rule.endpoint.rsplit(".", 1)[-1]
    if view_function is not None:
        target = inspect.unwrap(view_function)
        view_name = target.__name__
        view = f"{target.__module__}:{target.__qualname__}"
        docstring = inspect.getdoc(target)
        try:
            file = inspect.getsourcefile(target)
            line = inspect.getsourcelines(target)[1]
            source = f"{display_path(file)}:{line}" if file else None
        except (OSError, TypeError):
            source = None  # built in, or defined in a string: there is no file to point at
    return FlaskRoute(
        method=method,
        rule=rule.rule,
        template=from_flask_rule(rule.rule),
        fastapi_path=fastapi_path,
        endpoint=rule.endpoint,
        params=tuple(params),
        view=view,
        view_name=view_name,
        docstring=docstring,
        source=source,
    )


def display_path(file: str) -> str:
    """A path relative to the working directory when it is under it (shorter in messages)."""
    path = Path(file)
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return file


def convert_variable(
    converters: dict[str, type[Any]], name: str, converter: str | None, args: str | None
) -> PathParam:
    """One ``<converter(args):name>`` as a FastAPI path parameter."""
    cls = converters.get(converter or "default", UnicodeConverter)
    positional, keywords = parse_converter_args(args) if args else ((), {})
    try:
        bound = inspect.signature(cls).bind(None, *positional, **keywords).arguments
    except TypeError:
        bound = {}
    plain = f"{{{name}}}"
    if issubclass(cls, IntegerConverter):
        return PathParam(name, _annotated("int", ge=bound.get("min"), le=bound.get("max")), plain)
    if issubclass(cls, FloatConverter):
        return PathParam(name, _annotated("float", ge=bound.get("min"), le=bound.get("max")), plain)
    if issubclass(cls, UUIDConverter):
        return PathParam(name, "uuid.UUID", plain)
    if issubclass(cls, PathConverter):
        return PathParam(name, "str", f"{{{name}:path}}")
    if issubclass(cls, AnyConverter):
        items = [item for item in positional if isinstance(item, str)]
        literal = ", ".join(json.dumps(item) for item in items)
        return PathParam(name, f"Literal[{literal}]" if items else "str", plain)
    if issubclass(cls, UnicodeConverter):
        length = bound.get("length")
        minimum = length if length is not None else bound.get("minlength", 1)
        maximum = length if length is not None else bound.get("maxlength")
        return PathParam(
            name,
            # One character is the least any path segment has: Werkzeug's default says nothing.
            _annotated("str", min_length=None if minimum == 1 else minimum, max_length=maximum),
            plain,
        )
    # A custom converter: its to_python decides the type, which the handler must redo.
    return PathParam(name, "str", plain)


def _annotated(base: str, **limits: Any) -> str:
    given = {key: value for key, value in limits.items() if value is not None}
    if not given:
        return base
    arguments = ", ".join(f"{key}={value!r}" for key, value in given.items())
    return f"Annotated[{base}, Path({arguments})]"
