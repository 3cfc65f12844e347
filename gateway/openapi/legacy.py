"""The legacy app's routes as OpenAPI operations, read from its Werkzeug ``url_map``.

Each rule gives one operation per method (HEAD and OPTIONS left out: every framework answers
them on its own): path parameters typed from their converters, the view's docstring as summary
and description, the endpoint as ``operationId``, and response schemas inferred from recorded
samples (``gateway.recording.samples``) when there are any::

    for operation in legacy_operations(flask_app, samples_dir=Path("var/samples")):
        operation.path, operation.method, operation.operation["parameters"]
        # "/api/books/{book_id}", "GET", [{"name": "book_id", "in": "path", ...integer...}]

Werkzeug keeps a rule's converter arguments only inside the regular expression it compiles, so
the rule string is parsed again here, with Werkzeug's own ``parse_converter_args`` and the
converter classes of the app's ``url_map`` (custom ones included).
"""

from __future__ import annotations

import http
import inspect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from werkzeug.routing import parse_converter_args

from gateway.path_template import from_flask_rule, shape
from gateway.recording.samples import Sample, SampleFileError, read_samples, sample_path
from gateway.schema_infer import infer_schema

#: Werkzeug's own rule syntax: ``<converter(arguments):name>``, converter and arguments optional.
_RULE_PARAM = re.compile(
    r"<(?:(?P<converter>[a-zA-Z_][a-zA-Z0-9_]*)(?:\((?P<args>.*?)\))?:)?"
    r"(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)>"
)
log = structlog.get_logger("gateway.openapi")
_IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True, slots=True)
class LegacyOperation:
    #: The OpenAPI path: ``/api/books/{book_id}``.
    path: str
    method: str
    endpoint: str
    #: The operation object (``parameters``, ``summary``, ``responses``...).
    operation: dict[str, Any]
    #: The samples files its request and response schemas were inferred from (existing or not).
    sample_files: tuple[Path, ...] = ()


def legacy_operations(
    wsgi_app: Any,
    *,
    samples_dir: Path | None = None,
    sample_templates: Mapping[str, str] | None = None,
) -> list[LegacyOperation]:
    """Every rule of a Flask app (or any WSGI app with a Werkzeug ``url_map``), in rule order;
    ``[]`` for a WSGI app without one. ``sample_templates`` names other templates the samples
    of a rule may be filed under (a configured route spells its template its own way), keyed
    by shape (``gateway.path_template.shape``)."""
    url_map = getattr(wsgi_app, "url_map", None)
    if url_map is None:
        return []
    views: Mapping[str, Any] = getattr(wsgi_app, "view_functions", {})
    other = sample_templates or {}
    operations = []
    for rule in url_map.iter_rules():
        methods = sorted(frozenset(rule.methods or ()) - _IMPLICIT_METHODS)
        template = from_flask_rule(rule.rule)
        path, parameters = _path_and_parameters(rule.rule, url_map.converters)
        summary, description = _doc(views.get(rule.endpoint))
        for method in methods:
            operation: dict[str, Any] = {
                "operationId": rule.endpoint if len(methods) == 1 else f"{rule.endpoint}_{method}",
                "summary": summary or rule.endpoint,
                "tags": [rule.endpoint.rsplit(".", 1)[0] if "." in rule.endpoint else "legacy"],
            }
            if description:
                operation["description"] = description
            if parameters:
                operation["parameters"] = parameters
            files = _sample_files(samples_dir, method, [template, other.get(shape(template))])
            samples = [sample for file in files for sample in _read(file)]
            body = _request_body(samples) if method in _BODY_METHODS else None
            if body is not None:
                operation["requestBody"] = body
            operation["responses"] = _responses(samples)
            operations.append(LegacyOperation(path, method, rule.endpoint, operation, files))
    return operations


def _path_and_parameters(
    rule: str, converters: Mapping[str, type]
) -> tuple[str, list[dict[str, Any]]]:
    parameters = []
    for found in _RULE_PARAM.finditer(rule):
        converter = found.group("converter") or "default"
        schema = converter_schema(converter, found.group("args"), converters)
        parameter: dict[str, Any] = {
            "name": found.group("name"),
            "in": "path",
            "required": True,
            "schema": schema,
        }
        if converter == "path":
            parameter["description"] = "The rest of the path: may contain '/'."
        parameters.append(parameter)
    return _RULE_PARAM.sub(lambda found: "{" + found.group("name") + "}", rule), parameters


def converter_schema(
    converter: str, args: str | None, converters: Mapping[str, type]
) -> dict[str, Any]:
    """The JSON Schema of what a Werkzeug converter accepts: ``int`` → integer (minimum 0
    unless ``signed``), ``float`` → number, ``uuid`` → string/uuid, ``path`` → string,
    ``string``/``default`` → string with its length limits, ``any(a, b)`` → enum; a custom
    converter → string."""
    positional, keywords = parse_converter_args(args) if args else ((), {})
    options = _bind(converters.get(converter), positional, keywords)
    if converter in ("int", "float"):
        schema: dict[str, Any] = {"type": "integer" if converter == "int" else "number"}
        minimum = options.get("min")
        if minimum is None and not options.get("signed", False):
            minimum = 0
        if minimum is not None:
            schema["minimum"] = minimum
        if options.get("max") is not None:
            schema["maximum"] = options["max"]
        return schema
    if converter == "uuid":
        return {"type": "string", "format": "uuid"}
    if converter == "any":
        return {"type": "string", "enum": [str(item) for item in positional]}
    if converter in ("default", "string"):
        length = options.get("length")
        schema = {"type": "string", "minLength": length or options.get("minlength", 1)}
        maximum = length or options.get("maxlength")
        if maximum is not None:
            schema["maxLength"] = maximum
        return schema
    return {"type": "string"}


def _bind(
    cls: type | None, positional: tuple[Any, ...], keywords: dict[str, Any]
) -> dict[str, Any]:
    """The converter's arguments by name (the first, the map, left out)."""
    if cls is None:
        return {}
    try:
        bound = inspect.signature(cls).bind_partial(None, *positional, **keywords)
    except (TypeError, ValueError):
        return {}
    return dict(list(bound.arguments.items())[1:])


def _doc(view: Any) -> tuple[str | None, str | None]:
    """The docstring's first paragraph as summary, the rest as description."""
    text = inspect.getdoc(view) if view is not None else None
    if not text:
        return None, None
    summary, _, rest = text.partition("\n\n")
    return " ".join(summary.split()), rest.strip() or None


def _sample_files(
    directory: Path | None, method: str, templates: Iterable[str | None]
) -> tuple[Path, ...]:
    if directory is None:
        return ()
    return tuple(
        dict.fromkeys(sample_path(directory, method, t) for t in templates if t is not None)
    )


def _read(file: Path) -> list[Sample]:
    """The file's samples; none when it cannot be read (one bad file must not take the whole
    document down: the log line names it, and the operation says no samples were recorded)."""
    try:
        return read_samples(file)
    except (SampleFileError, OSError, UnicodeDecodeError) as exc:
        log.warning("openapi.samples_unreadable", file=str(file), error=str(exc))
        return []


def _responses(samples: list[Sample]) -> dict[str, Any]:
    if not samples:
        return {"default": {"description": "Whatever the view answers (no samples recorded)."}}
    by_status: dict[int, list[Sample]] = {}
    for sample in samples:
        by_status.setdefault(sample.response.status, []).append(sample)
    responses: dict[str, Any] = {}
    for status, recorded in sorted(by_status.items()):
        response: dict[str, Any] = {
            "description": f"{_phrase(status)} (inferred from {len(recorded)} recorded "
            f"sample{'s' if len(recorded) != 1 else ''})"
        }
        content = _content(
            (_media_type(s.response.headers), s.response.body.encoding, s.response.body.value)
            for s in recorded
        )
        if content:
            response["content"] = content
        responses[str(status)] = response
    return responses


def _request_body(samples: list[Sample]) -> dict[str, Any] | None:
    content = _content(
        (_media_type(s.request.headers), s.request.body.encoding, s.request.body.value)
        for s in samples
    )
    return {"content": content} if content else None


def _content(bodies: Iterable[tuple[str | None, str | None, Any]]) -> dict[str, Any]:
    """One schema per media type: JSON bodies inferred, text as string, the rest binary."""
    values: dict[str, list[Any]] = {}
    kinds: dict[str, str] = {}
    for media, encoding, value in bodies:
        if encoding is None:
            continue
        media = media or ("application/json" if encoding == "json" else "text/plain")
        values.setdefault(media, []).append(value)
        kinds.setdefault(media, encoding)
    content: dict[str, Any] = {}
    for media, found in values.items():
        if kinds[media] == "json":
            content[media] = {"schema": infer_schema(found)}
        elif kinds[media] == "text":
            content[media] = {"schema": {"type": "string"}}
        else:
            content[media] = {"schema": {"type": "string", "contentMediaType": media}}
    return content


def _media_type(headers: Iterable[tuple[str, str]]) -> str | None:
    for name, value in headers:
        if name.lower() == "content-type":
            return value.split(";", 1)[0].strip().lower() or None
    return None


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"Status {status}"
