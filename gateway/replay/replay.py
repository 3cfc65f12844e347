"""Replay recorded samples in process against both sides of a route, and compare the answers.

No server and no network: the legacy app and the route's service are built from the same
settings the gateway uses (``gateway.build``), their lifespans run, and each sample's request is
sent to both as the dispatcher would send it, with the recorded identity in the request facts
(as the auth middleware leaves it). The answers are compared with the route's shadow rules
(``[routes.shadow]``: ignore, unordered, float tolerance, compare_headers; the defaults without
one) by the shadow comparison itself (``gateway.shadow.compare``)::

    from gateway.recording.samples import read_samples
    from gateway.route_lookup import find_route

    found = find_route(settings, "GET /api/me")
    async with Replayer(settings, found) as replayer:
        for index, sample in enumerate(read_samples(path), start=1):
            outcome = await replayer.replay(index, sample, allow_unsafe=False)
            outcome.status, outcome.differences

Unsafe methods (``POST``, ``PUT``, ``PATCH``, ``DELETE``) change data on *both* sides, so they
are skipped unless ``allow_unsafe`` is given: then point both sides at a scratch database.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from starlette.types import ASGIApp, Scope

from gateway.build import build_auth, build_legacy, build_services, compare_rules
from gateway.context import ANONYMOUS, FACTS_KEY, LEGACY, Identity, RequestFacts
from gateway.errors import ConfigError
from gateway.loading import add_import_paths
from gateway.recording.samples import Sample
from gateway.route_lookup import FoundRoute
from gateway.settings import Settings
from gateway.shadow.capture import call_captured
from gateway.shadow.compare import Captured, Difference, compare

#: Methods that change data: replayed only with ``allow_unsafe``.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Seconds each side gets to answer one sample.
REPLAY_TIMEOUT = 30.0

Status = Literal["ok", "mismatch", "skipped", "error"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One sample's replay: ``ok``, ``mismatch`` (with the differences), ``skipped`` or
    ``error`` (with the reason)."""

    index: int
    sample: Sample
    status: Status
    differences: tuple[Difference, ...] = ()
    reason: str | None = None
    legacy_status: int | None = None
    new_status: int | None = None


class Replayer:
    """The legacy app and the route's service, built in process, with their lifespans."""

    def __init__(self, settings: Settings, route: FoundRoute) -> None:
        backend = route.settings.backend
        if backend == LEGACY:
            raise ConfigError.at(
                settings.source,
                f"routes[{route.index}].backend",
                f"{route.label} is served by legacy: there is no new side to compare",
            )
        add_import_paths(settings.source)
        wsgi_app, self._legacy = build_legacy(settings)
        codec = build_auth(settings, wsgi_app).codec
        self._service = build_services(settings, codec)[backend]
        self.route = route
        #: The service's name, for reports.
        self.backend = backend
        self._rules = compare_rules(route.settings)
        self._limit = settings.shadow.max_compare_body
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Replayer:
        try:
            await self._stack.enter_async_context(self._legacy)
            await self._stack.enter_async_context(self._service)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stack.aclose()

    async def replay(self, index: int, sample: Sample, *, allow_unsafe: bool = False) -> Outcome:
        request = sample.request
        reason = skip_reason(self.route, sample, allow_unsafe=allow_unsafe)
        if reason is not None:
            return Outcome(index, sample, "skipped", reason=reason)
        body = request.body.raw()
        scope = request_scope(sample, self.route, body, request_id=f"parity-{index}")
        legacy, legacy_error = await self._call(self._legacy, dict(scope), body)
        new, new_error = await self._call(self._service, dict(scope), body)
        if legacy is None or new is None:
            side = f"legacy: {legacy_error}" if legacy is None else f"{self.backend}: {new_error}"
            return Outcome(index, sample, "error", reason=side)
        differences = tuple(compare(legacy, new, self._rules))
        return Outcome(
            index,
            sample,
            "mismatch" if differences else "ok",
            differences,
            legacy_status=legacy.status,
            new_status=new.status,
        )

    async def _call(
        self, app: ASGIApp, scope: Scope, body: bytes
    ) -> tuple[Captured | None, str | None]:
        # Each side gets its own scope and facts: nothing one side sets is seen by the other.
        facts = replace(scope[FACTS_KEY])
        scope = {**scope, "headers": list(scope["headers"]), "state": {}, FACTS_KEY: facts}
        return await call_captured(app, scope, body, seconds=REPLAY_TIMEOUT, limit=self._limit)


async def replay_samples(
    settings: Settings, route: FoundRoute, samples: Sequence[Sample], *, allow_unsafe: bool
) -> list[Outcome]:
    """Every sample replayed, in order (``index`` counts from 1)."""
    async with Replayer(settings, route) as replayer:
        return [
            await replayer.replay(index, sample, allow_unsafe=allow_unsafe)
            for index, sample in enumerate(samples, start=1)
        ]


def skip_reason(route: FoundRoute, sample: Sample, *, allow_unsafe: bool) -> str | None:
    """Why ``sample`` is not replayed, or ``None``."""
    request = sample.request
    if sample.route != route.label:
        return f"recorded for {sample.route}, not {route.label}"
    if request.method in UNSAFE_METHODS and not allow_unsafe:
        return (
            f"unsafe method {request.method}: replay with --allow-unsafe, "
            "both sides pointed at a scratch database"
        )
    if request.body.truncated:
        return "the request body was cut when recorded"
    return None


def request_scope(sample: Sample, route: FoundRoute, body: bytes, *, request_id: str) -> Scope:
    """The ASGI scope the dispatcher would hand a backend for this sample: the recorded
    request, and the facts the gateway's middleware would have filled in."""
    request = sample.request
    headers = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in request.headers
        if name not in ("content-length", "transfer-encoding")
    ]
    if not any(name == b"host" for name, _ in headers):
        headers.insert(0, (b"host", b"127.0.0.1"))
    if body:
        headers.append((b"content-length", str(len(body)).encode()))
    recorded = request.identity
    identity = (
        ANONYMOUS
        if recorded.subject is None
        else Identity(recorded.subject, frozenset(recorded.roles), recorded.method)
    )
    facts = RequestFacts(
        request_id=request_id,
        path=request.path,
        method=request.method,
        route=route.template,
        identity=identity,
    )
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": request.path,
        "raw_path": request.path.encode("utf-8"),
        "query_string": request.query.encode("latin-1"),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 80),
        "state": {},
        FACTS_KEY: facts,
    }


def retired_message(route: FoundRoute) -> str | None:
    """Why a retired route has no parity to prove (its Flask view may be gone), or ``None``."""
    if route.settings.retired is None:
        return None
    return (
        f"{route.label} is retired: {route.settings.backend} serves it alone, so there is no "
        "legacy side to compare with (delete its samples and its parity test)"
    )


def no_samples_message(route: FoundRoute, path: Path) -> str:
    """What to say when a route has nothing to replay yet."""
    return (
        f"no recorded samples for {route.label} in {path}: run "
        f'`gateway record "{route.label}" --samples 20` while the server gets traffic'
    )
