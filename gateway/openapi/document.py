"""One OpenAPI 3.1 document for the whole application: every service route and every legacy
rule, each once, marked with who serves it today (``x-gateway``).

Services come first, from their own documents (FastAPI's ``app.openapi()``), their components
merged (``gateway.openapi.components``); then every legacy rule (``gateway.openapi.legacy``). A
method and path that both sides serve is listed once, with the service's operation (it declares
the contract the route keeps) and the legacy endpoint named in ``x-gateway``. One path per
shape: ``/api/books/{book_id}`` from a service and ``/api/books/<int:id>`` from Flask are one
path, the legacy parameters renamed by position. The gateway's own ``/_gateway/`` endpoints are
not part of it (they have their own document, ``/_gateway/openapi.json``)::

    document = AppDocument(wsgi_app=flask_app, services={"catalog": catalog_app}, table=table,
                           flags=flag_runtime, samples_dir=Path("var/samples"))
    document.render()    # a dict, ready for JSON

Built on first use and kept; built again when a samples file changes (its size or time).
``render`` fills ``x-gateway`` from the flag snapshot on every call: a flag change shows at once.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from gateway.auth.policy import PolicyTable
from gateway.dispatch import GATEWAY_PREFIX
from gateway.flags.runtime import FlagRuntime
from gateway.openapi.components import merge_components
from gateway.openapi.extension import describe, x_gateway
from gateway.openapi.legacy import legacy_operations
from gateway.openapi.security import requirement
from gateway.path_template import shape
from gateway.route_plan import RoutePlan
from gateway.routes import RouteTable

log = structlog.get_logger("gateway.openapi")
_PATH_PARAM = re.compile(r"\{([^}]*)\}")
_METHOD_ORDER = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_DESCRIPTION = (
    "Every route of the application, whichever side serves it: the new services' routes from "
    "their own OpenAPI documents, the legacy app's from its URL map (response schemas inferred "
    "from recorded samples). Each operation's `x-gateway` says who serves it today "
    "(`served_by`), its flag and its state: legacy, shadow, canary, new, retired, or unrouted "
    "(a service route no configured route sends traffic to)."
)


@dataclass(slots=True)
class _Operation:
    path: str
    method: str
    operation: dict[str, Any]
    legacy_endpoint: str | None = None
    services: list[str] = field(default_factory=list)
    plan: RoutePlan | None = None
    #: The route's access policy, in words (``public``, ``roles: admin``).
    access: str | None = None


@dataclass(frozen=True, slots=True)
class _Built:
    document: dict[str, Any]
    operations: tuple[_Operation, ...]
    fingerprint: tuple[tuple[str, int, int], ...]
    sample_files: tuple[Path, ...]


class AppDocument:
    def __init__(
        self,
        *,
        wsgi_app: Any,
        services: Mapping[str, Any],
        table: RouteTable[RoutePlan],
        flags: FlagRuntime,
        samples_dir: Path | None = None,
        retired: frozenset[tuple[str, str]] = frozenset(),
        policies: PolicyTable | None = None,
        security_schemes: Mapping[str, Any] | None = None,
        title: str | None = None,
    ) -> None:
        self._wsgi_app = wsgi_app
        self._services = dict(services)
        self._table = table
        self._flags = flags
        self._samples_dir = samples_dir
        self._retired = retired
        self._policies = policies
        self._schemes = dict(security_schemes or {})
        self._title = title or f"{getattr(wsgi_app, 'name', 'legacy')}: the whole application"
        self._built: _Built | None = None
        # Two first requests at once build it once; rendering needs no lock.
        self._lock = threading.Lock()

    def render(self) -> dict[str, Any]:
        """The document with every operation's ``x-gateway`` as of now. Blocking (the first
        call builds: Flask's url_map, every service's schema, the samples files): call it from
        a worker thread."""
        built = self._current()
        flags = self._flags.view()
        rollouts = self._flags.state.rollouts
        paths: dict[str, dict[str, Any]] = {}
        for op in built.operations:
            extension = x_gateway(
                op.plan,
                flags,
                legacy_endpoint=op.legacy_endpoint,
                services=op.services,
                retired=(shape(op.path), op.method.upper()) in self._retired,
                rollouts=rollouts,
            )
            if op.access is not None:
                extension["access"] = op.access
            operation = {**op.operation, "x-gateway": extension}
            details = op.operation.get("description")
            operation["description"] = describe(extension) + (f"\n\n{details}" if details else "")
            paths.setdefault(op.path, {})[op.method] = operation
        gateway = {"kill_switch": flags["kill_switch"], "flags_version": flags["version"]}
        return {**built.document, "paths": paths, "x-gateway": gateway}

    def _current(self) -> _Built:
        built = self._built
        if built is not None and _fingerprint(built.sample_files) == built.fingerprint:
            return built
        with self._lock:
            if self._built is None or self._built is built:
                self._built = self._build()
            return self._built

    def _build(self) -> _Built:
        documents = {}
        for name, app in self._services.items():
            generate = getattr(app, "openapi", None)
            if not callable(generate):
                continue  # a raw ASGI app: it has no schema to list
            try:
                documents[name] = generate()
            except Exception as exc:
                # One service's broken schema (a model FastAPI cannot render) leaves its routes
                # out, not the whole document; the log line says which and why.
                log.warning("openapi.service_schema_failed", service=name, error=repr(exc))
        merged = merge_components(documents)
        operations: dict[tuple[str, str], _Operation] = {}
        paths_by_shape: dict[str, str] = {}

        def add(path: str, method: str, operation: dict[str, Any]) -> _Operation:
            key = (shape(path), method)
            if key not in operations:
                canonical = paths_by_shape.setdefault(key[0], path)
                if canonical != path:
                    operation = _rename_path_parameters(operation, path, canonical)
                operations[key] = _Operation(canonical, method, operation)
            return operations[key]

        for service, paths in merged.paths.items():
            for path, items in paths.items():
                if not path.startswith(GATEWAY_PREFIX):
                    for method, operation in items.items():
                        # Untagged, Swagger UI would list it under "default": group by service.
                        tagged = {"tags": [service], **operation}
                        add(path, method, tagged).services.append(service)
        sample_templates = {shape(plan.template): plan.template for plan in self._table.routes}
        legacy = legacy_operations(
            self._wsgi_app, samples_dir=self._samples_dir, sample_templates=sample_templates
        )
        for found in legacy:
            if not found.path.startswith(GATEWAY_PREFIX):
                add(
                    found.path, found.method.lower(), found.operation
                ).legacy_endpoint = found.endpoint

        ordered = sorted(
            operations.values(), key=lambda op: (op.path, _METHOD_ORDER.index(op.method))
        )
        _unique_operation_ids(ordered)
        for op in ordered:
            sample = _sample_path(op.path, op.operation)
            match = self._table.match(op.method.upper(), sample)
            op.plan = match.route if match is not None else None
            if self._policies is not None:
                policy = self._policies.lookup(op.method.upper(), sample)
                op.access = policy.describe()
                if "security" not in op.operation:  # a service's own requirement stands
                    op.operation = {**op.operation, "security": requirement(policy, self._schemes)}
        document: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": {"title": self._title, "version": "1", "description": _DESCRIPTION},
            "paths": {},
        }
        components = merged.components
        if self._schemes:
            schemes = {**components.get("securitySchemes", {}), **self._schemes}
            components = {**components, "securitySchemes": schemes}
        if components:
            document["components"] = components
        files = tuple(dict.fromkeys(file for op in legacy for file in op.sample_files))
        return _Built(document, tuple(ordered), _fingerprint(files), files)


def _fingerprint(files: Iterable[Path]) -> tuple[tuple[str, int, int], ...]:
    """Size and modification time of each samples file that exists: a change means rebuild."""
    found = []
    for file in files:
        try:
            stat = file.stat()
        except OSError:
            continue
        found.append((str(file), stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def _rename_path_parameters(operation: dict[str, Any], path: str, canonical: str) -> dict[str, Any]:
    """The operation with its path parameters named as in ``canonical`` (same shape)."""
    names = dict(zip(_PATH_PARAM.findall(path), _PATH_PARAM.findall(canonical), strict=True))
    parameters = [
        {**p, "name": names.get(p["name"], p["name"])} if p.get("in") == "path" else p
        for p in operation.get("parameters", [])
    ]
    return {**operation, "parameters": parameters} if parameters else operation


def _unique_operation_ids(operations: Iterable[_Operation]) -> None:
    """OpenAPI wants them unique over the document: a repeat gets its source as a prefix."""
    used: set[str] = set()
    for op in operations:
        wanted = op.operation.get("operationId")
        if wanted is None:
            continue
        source = op.services[0] if op.services else "legacy"
        candidate, number = wanted, 1
        while candidate in used:
            number += 1
            candidate = f"{source}__{wanted}" if number == 2 else f"{source}__{wanted}_{number}"
        used.add(candidate)
        if candidate != wanted:
            op.operation = {**op.operation, "operationId": candidate}


def _sample_path(path: str, operation: Mapping[str, Any]) -> str:
    """A path the route table can match: ``/api/books/{book_id}`` (integer) → ``/api/books/1``."""
    types = {
        p["name"]: p.get("schema", {}).get("type")
        for p in operation.get("parameters", [])
        if p.get("in") == "path"
    }
    return _PATH_PARAM.sub(
        lambda found: "1" if types.get(found[1]) in ("integer", "number") else "x", path
    )
