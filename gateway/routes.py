"""The route table: which entry (a route plan, an access policy, a body limit) a (method,
canonical path) matches.

The dispatcher's table holds one ``RoutePlan`` per ``[[routes]]`` entry; the legacy app is the
catch-all. Matching walks a segment trie, so its cost grows with the path's depth, not with the
number of routes. At each segment a static name wins over an ``int`` parameter, which wins over
a ``str`` one, which wins over a ``path`` tail, whatever the order in the config (the same
precedence Werkzeug uses).

Trailing slashes are significant: ``/api/books`` and ``/api/books/`` are different templates. A
request that matches no configured route goes to the legacy app, which applies Flask's own
``strict_slashes`` rules, so an unmigrated spelling behaves exactly as it did before the gateway.

::

    >>> table = RouteTable([Rule("/api/books/{book_id:int}", frozenset({"GET"}))])
    >>> table.match("GET", "/api/books/7").params
    {'book_id': '7'}
    >>> table.match("PUT", "/api/books/7") is None   # legacy serves it
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from gateway.errors import DuplicateRouteError
from gateway.path_template import Param, Static, parse_template
from gateway.recent import LONGEST_PATH_REMEMBERED, PATHS_REMEMBERED, remember_recent

#: A route with no methods listed answers every method (access policies use this).
ANY_METHOD = "*"


class Routable(Protocol):
    """Anything the trie can hold: a route plan, an access policy, a body limit, a rule."""

    @property
    def template(self) -> str: ...

    @property
    def methods(self) -> frozenset[str]: ...


R = TypeVar("R", bound=Routable)


@dataclass(frozen=True, slots=True)
class Rule:
    """The plainest routable thing: a template and its methods (a Flask rule, for labels)."""

    template: str
    methods: frozenset[str]


@dataclass(frozen=True, slots=True)
class RouteMatch(Generic[R]):
    route: R
    #: Shared by every caller that matched the same method and path: read it, never change it.
    params: dict[str, str]


@dataclass(slots=True)
class _Node(Generic[R]):
    static: dict[str, _Node[R]] = field(default_factory=dict)
    int_param: tuple[str, _Node[R]] | None = None
    str_param: tuple[str, _Node[R]] | None = None
    path_param: tuple[str, dict[str, R]] | None = None
    #: Routes that end at this node, by method (or ANY_METHOD).
    routes: dict[str, R] = field(default_factory=dict)


class RouteTable(Generic[R]):
    """An immutable set of routes (or anything with a template and methods) with a trie matcher."""

    def __init__(self, routes: Iterable[R]) -> None:
        self.routes: tuple[R, ...] = tuple(routes)
        self._root: _Node[R] = _Node()
        claimed: dict[tuple[str, str], R] = {}
        for route in self.routes:
            for method in route.methods or {ANY_METHOD}:
                key = (method, _signature(route.template))
                other = claimed.get(key)
                if other is not None:
                    raise DuplicateRouteError(
                        f"{method} {route.template} is also claimed by {other.template}"
                    )
                claimed[key] = route
            methods = set(route.methods or {ANY_METHOD})
            # HEAD is answered by whoever answers GET, as Starlette and Flask both do.
            if "GET" in methods:
                methods.add("HEAD")
            self._insert(route, methods)
        # A request's policy, body limit and route are each looked up in their own table, and
        # most traffic repeats a small set of paths: a remembered answer costs a fifth of a walk
        # (0.85 µs for a one-segment path); a longer path is walked every time.
        #: ``match(method, path)``: the route for this method and canonical path, or ``None``
        #: for the legacy catch-all.
        self.match: Callable[[str, str], RouteMatch[R] | None] = remember_recent(
            self._match, size=PATHS_REMEMBERED, longest=LONGEST_PATH_REMEMBERED
        )

    def _insert(self, route: R, methods: set[str]) -> None:
        node = self._root
        for segment in parse_template(route.template):
            if isinstance(segment, Static):
                node = node.static.setdefault(segment.text, _Node())
            elif segment.converter == "path":
                if node.path_param is None:
                    node.path_param = (segment.name, {})
                target = node.path_param[1]
                for method in methods:
                    target.setdefault(method, route)
                return
            else:
                slot = node.int_param if segment.converter == "int" else node.str_param
                if slot is None:
                    slot = (segment.name, _Node())
                    if segment.converter == "int":
                        node.int_param = slot
                    else:
                        node.str_param = slot
                node = slot[1]
        for method in methods:
            # An explicit HEAD route wins over the HEAD implied by a GET route.
            if method not in node.routes or method in route.methods:
                node.routes[method] = route

    def _match(self, method: str, path: str) -> RouteMatch[R] | None:
        """The route for this method and canonical path, or ``None`` for the legacy catch-all."""
        if not path.startswith("/"):
            return None
        params: dict[str, str] = {}
        route = _walk(self._root, path[1:].split("/"), 0, method, params)
        return RouteMatch(route, params) if route is not None else None

    def __len__(self) -> int:
        return len(self.routes)


def _signature(template: str) -> str:
    """The template with parameter names erased but converters kept: ``/a/{:int}``."""
    return "/" + "/".join(
        f"{{:{segment.converter}}}" if isinstance(segment, Param) else segment.text
        for segment in parse_template(template)
    )


def _walk(
    node: _Node[R], segments: list[str], depth: int, method: str, params: dict[str, str]
) -> R | None:
    if depth == len(segments):
        return node.routes.get(method) or node.routes.get(ANY_METHOD)
    segment = segments[depth]
    child = node.static.get(segment)
    if child is not None:
        found = _walk(child, segments, depth + 1, method, params)
        if found is not None:
            return found
    if segment:
        # Any Unicode decimal digit, as Werkzeug's ``int`` converter (``\d+``) reads it: the
        # segment a Flask rule would route as a number is classified as that rule here.
        is_int = segment.isdecimal()
        for slot in (node.int_param if is_int else None, node.str_param):
            if slot is not None:
                name, child = slot
                found = _walk(child, segments, depth + 1, method, params)
                if found is not None:
                    params[name] = segment
                    return found
        if node.path_param is not None:
            name, by_method = node.path_param
            found = by_method.get(method) or by_method.get(ANY_METHOD)
            if found is not None:
                params[name] = "/".join(segments[depth:])
                return found
    return None
