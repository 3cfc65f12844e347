"""The route inventory: every Flask rule and every service route, and who serves each today.

It answers the questions a team asks mid-migration (what is migrated, what is still legacy, what
is new-only, which new route is unreachable) and checks that every configured route points at a
service that really implements it::

    inventory = build_inventory(flask_app, services, table)
    problems = inventory.route_problems(source)       # [] when the config is consistent
    for row in inventory.rows: print(row.path, row.methods, row.served_by, row.status)

Who serves a path is found by asking the live route table with a sample path built from the
template, so the inventory shows what the dispatcher really does, precedence rules included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from starlette.routing import BaseRoute, Mount

from gateway.context import LEGACY
from gateway.path_template import Param, from_flask_rule, parse_template, shape
from gateway.routes import RouteTable, Rule

if TYPE_CHECKING:
    from gateway.route_plan import RoutePlan

Status = Literal["migrated", "retired", "legacy", "new-only", "unrouted"]
#: Methods every framework answers on its own; listing them would only add noise.
_IMPLICIT_METHODS = frozenset({"HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class InventoryRow:
    path: str
    methods: tuple[str, ...]
    #: ``"legacy"``, a service name, or ``None`` when nothing the route table sends there
    #: implements it.
    served_by: str | None
    status: Status
    legacy_endpoint: str | None
    services: tuple[str, ...]
    #: The flag that decides per request between ``served_by`` and legacy, if any.
    flag: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "methods": list(self.methods),
            "served_by": self.served_by,
            "flag": self.flag,
            "status": self.status,
            "legacy_endpoint": self.legacy_endpoint,
            "services": list(self.services),
        }


@dataclass(slots=True)
class _Entry:
    path: str
    legacy_endpoint: str | None = None
    services: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Inventory:
    rows: tuple[InventoryRow, ...]
    #: The legacy app's rules as gateway routes, used to label legacy requests in the logs.
    legacy_routes: tuple[Rule, ...]
    #: The configured routes, as the dispatcher serves them.
    plans: tuple[RoutePlan, ...]
    #: (shape, method) pairs each service implements; ``None`` for an app that does not list
    #: its routes (a raw ASGI callable), which the gateway cannot check.
    service_methods: Mapping[str, frozenset[tuple[str, str]] | None]
    #: Services whose router redirects a path to its other trailing-slash spelling (FastAPI's
    #: and Starlette's ``redirect_slashes``, on by default).
    slash_redirects: frozenset[str] = frozenset()

    def unchecked_services(self) -> list[str]:
        """Services whose routes cannot be listed, so their routes were not verified."""
        return [name for name, methods in self.service_methods.items() if methods is None]

    def route_problems(self, source: str) -> list[str]:
        """Configured routes whose service does not implement that method and path."""
        problems = []
        for plan in self.plans:
            if plan.backend == LEGACY:
                continue
            implemented = self.service_methods.get(plan.backend, frozenset())
            if implemented is None:
                continue
            # HEAD and OPTIONS are every framework's own (HEAD runs the GET handler, a CORS
            # middleware answers OPTIONS), listed or not.
            shapes = {shape(plan.template)}
            if plan.backend in self.slash_redirects:
                # The service answers the other spelling with a redirect to the one it has.
                shapes.add(shape(_toggle_slash(plan.template)))
            missing = [
                m
                for m in sorted(plan.methods - _IMPLICIT_METHODS)
                if not any((candidate, m) in implemented for candidate in shapes)
            ]
            if missing:
                problems.append(
                    f"{source}: {plan.config_key}: service {plan.backend!r} does not "
                    f"implement {', '.join(missing)} {plan.template}"
                )
        return problems


def _toggle_slash(template: str) -> str:
    return template[:-1] if template.endswith("/") and template != "/" else template + "/"


def flask_rules(wsgi_app: Any) -> list[tuple[str, frozenset[str], str]]:
    """(template, methods, endpoint) for each rule of a Flask app; empty for other WSGI apps.
    Build-only rules (``add_retired_rules``) serve nothing, so they are left out."""
    url_map = getattr(wsgi_app, "url_map", None)
    if url_map is None:
        return []
    return [
        (
            from_flask_rule(rule.rule),
            frozenset(rule.methods or ()) - _IMPLICIT_METHODS,
            rule.endpoint,
        )
        for rule in url_map.iter_rules()
        if not rule.build_only
    ]


def service_routes(app: Any, *, implicit: bool = False) -> list[tuple[str, frozenset[str], str]]:
    """(template, methods, name) for each route of a Starlette/FastAPI app, those hidden from
    its schema included (``/docs``, ``/redoc``, ``/openapi.json`` are routes it serves too).
    HEAD and OPTIONS are left out unless ``implicit`` (an explicit ``@app.head`` handler)."""
    drop = frozenset() if implicit else _IMPLICIT_METHODS
    return list(_walk_routes(getattr(app, "routes", ()), "", drop))


def _walk_routes(
    routes: Iterable[BaseRoute], prefix: str, drop: frozenset[str]
) -> Iterable[tuple[str, frozenset[str], str]]:
    for route in _effective_routes(routes):
        if isinstance(route, Mount):
            yield from _walk_routes(route.routes, prefix + route.path, drop)
            continue
        methods = getattr(route, "methods", None)
        path = getattr(route, "path", None)
        if not methods or path is None:
            continue
        kept = frozenset(methods) - drop
        if kept:
            yield prefix + path, kept, getattr(route, "name", "")


def _effective_routes(routes: Iterable[BaseRoute]) -> Iterable[Any]:
    """Routes as the app serves them, with FastAPI's included routers expanded.

    FastAPI 0.16x keeps ``include_router`` as one node in ``app.routes`` and expands it through
    ``fastapi.routing.iter_route_contexts`` (what its OpenAPI generator uses); older releases
    copy the routes in flat.
    """
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:
        return routes
    return (
        context.route if isinstance(context.route, Mount) else context
        for context in iter_route_contexts(list(routes))
    )


def build_inventory(
    wsgi_app: Any, services: Mapping[str, Any], table: RouteTable[RoutePlan]
) -> Inventory:
    entries: dict[tuple[str, str], _Entry] = {}
    legacy_routes: list[Rule] = []
    seen_legacy: set[tuple[str, str]] = set()
    for template, methods, endpoint in flask_rules(wsgi_app):
        fresh = frozenset(m for m in methods if (shape(template), m) not in seen_legacy)
        if fresh:
            legacy_routes.append(Rule(template, fresh))
        for method in methods:
            seen_legacy.add((shape(template), method))
            entry = entries.setdefault((shape(template), method), _Entry(template))
            entry.legacy_endpoint = endpoint

    service_methods: dict[str, frozenset[tuple[str, str]] | None] = {}
    for name, app in services.items():
        if not hasattr(app, "routes"):
            service_methods[name] = None
            continue
        implemented = set()
        for template, methods, _ in service_routes(app):
            for method in methods:
                implemented.add((shape(template), method))
                entry = entries.setdefault((shape(template), method), _Entry(template))
                entry.services[name] = template
        service_methods[name] = frozenset(implemented)

    for route in table.routes:
        for method in route.methods:
            entries.setdefault((shape(route.template), method), _Entry(route.template))

    grouped: dict[
        tuple[str, str | None, Status, str | None, tuple[str, ...], str | None], list[str]
    ] = {}
    for (_, method), entry in entries.items():
        match = table.match(method, example_path(entry.path))
        backend = match.route.backend if match is not None else LEGACY
        flag = match.route.flag if match is not None else None
        status = _status(backend, entry)
        if match is not None and match.route.retired:
            status = "retired"
        served_by = None if status == "unrouted" else backend
        key = (
            entry.path,
            served_by,
            status,
            entry.legacy_endpoint,
            tuple(sorted(entry.services)),
            flag,
        )
        grouped.setdefault(key, []).append(method)

    rows = [
        InventoryRow(path, tuple(sorted(methods)), served_by, status, endpoint, services_, flag)
        for (path, served_by, status, endpoint, services_, flag), methods in grouped.items()
    ]
    rows.sort(key=lambda row: (row.path, row.methods))
    redirecting = frozenset(
        name
        for name, app in services.items()
        if getattr(getattr(app, "router", None), "redirect_slashes", False)
    )
    return Inventory(tuple(rows), tuple(legacy_routes), table.routes, service_methods, redirecting)


def _status(served_by: str, entry: _Entry) -> Status:
    if served_by == LEGACY:
        return "legacy" if entry.legacy_endpoint is not None else "unrouted"
    return "migrated" if entry.legacy_endpoint is not None else "new-only"


def example_path(template: str) -> str:
    """A concrete path the template matches: ``/api/books/{id:int}`` gives ``/api/books/1``."""
    parts = []
    for segment in parse_template(template):
        if isinstance(segment, Param):
            parts.append("1" if segment.converter == "int" else "x")
        else:
            parts.append(segment.text)
    return "/" + "/".join(parts)
