"""The recording hook on the request path: copy a share of a route's exchanges to its samples.

The dispatcher asks it about every request it matched to a configured route, after
authentication (the identity is known; refused requests are not recorded) and before the route
serves it. The dispatcher has matched the route already, so the hook looks it up by template and
method; it is not a layer of its own, which cost a frame and a second route match per request
(0.1 to 0.4 µs in ``bench/overhead_micro.py``, alternated with the layer; bench/README.md)::

    hook = RecordingHook(routes=recorded_routes(settings), writer=writer,
                         recordings=lambda: flags.state.recordings)
    wanted = hook.wanted("/api/me", "GET")     # None: serve as usual
    if wanted is not None:
        await hook.record(wanted, app, scope, receive, send)

A request is recorded when its route has ``[routes.record]`` (with the route's ``sample_rate``,
until its file holds ``max_samples``) or when ``gateway record`` asked for it through the flag
store (every request, until the file holds the asked-for count). The hook only *observes*: the
app gets the client's own ``receive`` messages and the client gets the app's own ``send``
messages, unchanged and unbuffered; copies of at most ``max_body + 1`` bytes of each body are
kept aside. Everything else (redaction, JSON, the file) happens on the writer's thread. When no
route records and no recording was asked for, a request costs one attribute check and one
empty-mapping check.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.context import request_facts
from gateway.flags.model import Recording
from gateway.recording.samples import RecordedIdentity, sample_path
from gateway.recording.writer import Exchange, SampleWriter
from gateway.settings import RecordRouteSettings, Settings

log = structlog.get_logger("gateway.recording")

#: Used for a route that ``gateway record`` records without ``[routes.record]`` of its own.
DEFAULT_RECORD = RecordRouteSettings()


@dataclass(frozen=True, slots=True)
class RecordedRoute:
    """One method of one ``[[routes]]`` entry, as the hook looks it up."""

    template: str
    method: str
    #: ``GET /api/me``: the key of ``gateway record``'s requests and the samples' ``route``.
    label: str
    path: Path
    #: ``[routes.record]``; ``None``: recorded only when ``gateway record`` asks.
    record: RecordRouteSettings | None


def recorded_routes(settings: Settings) -> list[RecordedRoute]:
    """Every method of every configured route: any of them can be asked for by ``gateway
    record``."""
    return [
        RecordedRoute(
            template=route.path,
            method=method,
            label=f"{method} {route.path}",
            path=sample_path(settings.record.dir, method, route.path),
            record=route.record,
        )
        for route in settings.routes
        for method in route.methods
    ]


@dataclass(frozen=True, slots=True)
class Wanted:
    """A request the hook records: its route, and how many samples the route's file may hold."""

    route: RecordedRoute
    limit: int


class RecordingHook:
    def __init__(
        self,
        *,
        routes: Sequence[RecordedRoute],
        writer: SampleWriter,
        recordings: Callable[[], Mapping[str, Recording]],
        chance: Callable[[], float] = random.random,
    ) -> None:
        self._routes = {(route.template, route.method): route for route in routes}
        self._configured = any(route.record is not None for route in routes)
        self._writer = writer
        self._recordings = recordings
        self._chance = chance

    def wanted(self, template: str, method: str) -> Wanted | None:
        """Whether to record a request that the route ``template`` serves for ``method``."""
        if not (self._configured or self._recordings()):
            return None
        route = self._routes.get((template, method))
        if route is None and method == "HEAD":
            # Served by the route's GET, as the route table matches it; recorded as a GET.
            route = self._routes.get((template, "GET"))
        if route is None:
            return None
        limit = self._limit(route)
        return None if limit is None else Wanted(route, limit)

    async def record(
        self, wanted: Wanted, app: ASGIApp, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Serve the request with ``app``, keeping a copy of the exchange for the writer."""
        route = wanted.route
        settings = route.record or DEFAULT_RECORD
        capture = _Capture(settings.max_body)
        # Taken now: a backend may change the scope's header list while it serves.
        capture.request_headers = list(scope["headers"])

        async def receive_copy() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                capture.request.add(message.get("body", b""))
            return message

        async def send_copy(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                capture.status = message["status"]
                capture.headers = list(message.get("headers", ()))
            elif kind == "http.response.body":
                capture.response.add(message.get("body", b""))
                if not message.get("more_body", False):
                    capture.complete = True
            await send(message)

        await app(scope, receive_copy, send_copy)
        if not capture.complete or capture.status is None:
            return  # an aborted or missing response: nothing worth replaying
        try:
            self._offer(route, wanted.limit, capture, scope)
        except Exception:  # the client has its answer; a bug here must not surface there
            log.exception("recording.capture_failed", route=route.label)

    def _offer(self, route: RecordedRoute, limit: int, capture: _Capture, scope: Scope) -> None:
        facts = request_facts(scope)
        identity = facts.identity
        settings = route.record or DEFAULT_RECORD
        self._writer.offer(
            Exchange(
                path=route.path,
                limit=limit,
                route=route.label,
                method=facts.method,
                target=facts.path,
                query=scope.get("query_string", b""),
                request_headers=capture.request_headers,
                request_body=capture.request.value(),
                identity=RecordedIdentity(
                    identity.subject, tuple(sorted(identity.roles)), identity.method
                ),
                status=capture.status or 0,
                response_headers=capture.headers,
                response_body=capture.response.value(),
                backend=facts.backend,
                max_body=settings.max_body,
            )
        )

    def _limit(self, route: RecordedRoute) -> int | None:
        """How many samples the route's file may hold, if this request is to be recorded."""
        asked = self._recordings().get(route.label)
        if asked is not None and asked.until > time.time():
            limit = asked.target
        elif route.record is not None and self._chance() < route.record.sample_rate:
            limit = route.record.max_samples
        else:
            return None
        # Approximate (other workers write too); the writer enforces the limit exactly.
        return limit if self._writer.lines(route.path) < limit else None


class _Kept:
    """The first ``limit + 1`` bytes of a body: enough to know it was longer than ``limit``."""

    __slots__ = ("_chunks", "_left")

    def __init__(self, limit: int) -> None:
        self._chunks: list[bytes] = []
        self._left = limit + 1

    def add(self, chunk: bytes) -> None:
        if chunk and self._left > 0:
            kept = chunk[: self._left]
            self._chunks.append(kept)
            self._left -= len(kept)

    def value(self) -> bytes:
        return b"".join(self._chunks)


class _Capture:
    __slots__ = ("complete", "headers", "request", "request_headers", "response", "status")

    def __init__(self, max_body: int) -> None:
        self.request_headers: list[tuple[bytes, bytes]] = []
        self.request = _Kept(max_body)
        self.response = _Kept(max_body)
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False
