"""Find the ``[[routes]]`` entry a command line names: ``"GET /api/me"``, ``/api/me``, or a
concrete path (``"GET /api/books/3"``).

Every command that takes a ROUTE argument (``gateway record``, ``gateway parity``,
``gateway retire``, ``gateway scaffold``'s idempotency check) resolves it here, so they all
accept the same spellings and fail with the same message::

    found = find_route(settings, "GET /api/books/{book_id:int}")
    found.method, found.template, found.index, found.settings
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from gateway.routes import RouteTable
from gateway.settings import RouteSettings, Settings


class RouteNotFound(LookupError):
    """The argument names no configured route (or several); the message says which exist."""


@dataclass(frozen=True, slots=True)
class FoundRoute:
    #: The one method the argument chose (``GET`` when it named none and the route has one).
    method: str
    template: str
    #: The entry's position in ``[[routes]]``: messages call it ``routes[index]``.
    index: int
    settings: RouteSettings

    @property
    def label(self) -> str:
        """``GET /api/me``: how samples, reports and messages name one method of a route."""
        return f"{self.method} {self.template}"


@dataclass(frozen=True, slots=True)
class _Entry:
    template: str
    methods: frozenset[str]
    index: int


def find_route(settings: Settings, text: str) -> FoundRoute:
    """The route ``text`` names; ``RouteNotFound`` when it names none or is ambiguous."""
    method, _, path = text.strip().partition(" ")
    if not path:
        method, path = "", method
    method, path = method.upper(), path.strip()
    candidates = [
        FoundRoute(m, route.path, index, route)
        for index, route in enumerate(settings.routes)
        for m in route.methods
    ]
    named = [c for c in candidates if c.template == path] or _matching(settings, path)
    if method:
        named = [c for c in named if c.method == method]
    if len(named) == 1:
        return named[0]
    labels = [c.label for c in candidates]
    if not named:
        near = difflib.get_close_matches(text.strip(), labels, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
        known = ", ".join(labels) or "none"
        raise RouteNotFound(f"no route {text.strip()!r} in [[routes]]{hint} (configured: {known})")
    choices = ", ".join(repr(c.label) for c in named)
    raise RouteNotFound(f"{text.strip()!r} names several routes; say which: {choices}")


def _matching(settings: Settings, path: str) -> list[FoundRoute]:
    """The routes whose template matches a concrete path (``/api/books/3``)."""
    if not path.startswith("/"):
        return []
    entries = [
        _Entry(route.path, frozenset(route.methods), index)
        for index, route in enumerate(settings.routes)
    ]
    table = RouteTable(entries)
    found = []
    for method in sorted({m for route in settings.routes for m in route.methods}):
        match = table.match(method, path)
        if match is not None:
            index = match.route.index
            found.append(FoundRoute(method, match.route.template, index, settings.routes[index]))
    return found
