"""Request body limits: size, counted on the bytes that arrive, and time to receive them.

::

    limits = BodyLimits(max_body_size=10 * 1024 * 1024, body_timeout=60.0,
                        routes=[BodyLimit("/api/uploads", frozenset({"POST"}), 50_000_000, 300.0)])
    LimitsMiddleware(app, max_body_size=10 * 1024 * 1024, body_timeout=60.0)  # as ASGI middleware

Checked after the request head and before authentication (``gateway.middleware.checks``), after
the request context (it needs the canonical path for per-route limits and answers with the
request id). A request without a body (no ``Content-Length`` and no
``Transfer-Encoding``) passes straight through, with nothing wrapped or allocated. Otherwise:

- A ``Content-Length`` over the route's limit gets 413 at once; the body is never read.
- The bytes the backend actually receives are counted, whatever ``Content-Length`` claimed (a
  chunked body has none). Crossing the limit makes ``receive`` raise ``BodyRejected``; if the
  backend's response has not started, the client gets a JSON 413 instead of whatever the
  backend makes of the error, else the response is aborted on the wire (never completed as if
  the request had been whole).
- The whole body must arrive within ``body_timeout`` seconds of the backend's first read. A
  slow client (one byte a second) gets 408 the same way, and a Flask thread blocked reading the
  body is woken by the same exception, so the thread is freed.
- The error responses say ``Connection: close``: the rest of the body is never read.

Limits apply while the body is being read only: once its last byte has arrived, ``receive``
(which streamed responses use to notice a disconnect) passes through untouched. Time limits on
the request head (408) and its size (431) are enforced by the HTTP protocol, not here
(``gateway.http_protocol``): an ASGI app only runs once the head is complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.context import RequestFacts, request_facts
from gateway.errors import BodyRejected, Refusal, send_error
from gateway.middleware.checks import RequestChecksMiddleware
from gateway.routes import RouteTable

log = structlog.get_logger("gateway.limits")

_CLOSE = [(b"connection", b"close")]


@dataclass(frozen=True, slots=True)
class BodyLimit:
    """A route's own body limits (a template and methods, matched like access policies)."""

    template: str
    methods: frozenset[str]
    max_body_size: int
    body_timeout: float


class _Aborted(Exception):
    """The response had started when the body broke its limit: the connection must drop."""


class BodyLimits:
    """The limits above, for each request: ``guard`` decides."""

    def __init__(
        self, *, max_body_size: int, body_timeout: float, routes: Iterable[BodyLimit] = ()
    ) -> None:
        self._max_body_size = max_body_size
        self._body_timeout = body_timeout
        rules = tuple(routes)
        self._routes: RouteTable[BodyLimit] | None = RouteTable(rules) if rules else None
        self._log = log.bind()

    def guard(
        self, scope: Scope, receive: Receive, send: Send, declared: int | None
    ) -> _BodyGuard | Refusal | None:
        """An HTTP request's limits, given the body size its headers declare (0: none,
        ``None``: unknown, as ``declared_body_size`` says): ``None`` for no body (nothing to
        guard), a 413 refusal for a declared size over the limit, or the guard to serve the
        request under (``guard.serve(app, scope)``)."""
        if declared == 0:
            return None
        facts = request_facts(scope)
        max_size, timeout = self._max_body_size, self._body_timeout
        if self._routes is not None:
            match = self._routes.match(facts.method, facts.path)
            if match is not None:
                max_size, timeout = match.route.max_body_size, match.route.body_timeout
        if declared is not None and declared > max_size:
            # refuse() says Connection: close: the body is never read.
            return Refusal(413, f"the request body is larger than {max_size} bytes")
        return _BodyGuard(facts, receive, send, max_size, timeout, self._log)


class LimitsMiddleware(RequestChecksMiddleware):
    """``BodyLimits`` alone, as ASGI middleware (the gateway runs it with the other checks, in
    one layer: ``gateway.middleware.checks``)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_size: int,
        body_timeout: float,
        routes: Iterable[BodyLimit] = (),
    ) -> None:
        limits = BodyLimits(max_body_size=max_body_size, body_timeout=body_timeout, routes=routes)
        super().__init__(app, limits=limits)


class _BodyGuard:
    """One request's body accounting: wraps ``receive`` (counts, times) and ``send`` (swaps the
    backend's response for the limit's error once the limit is broken)."""

    __slots__ = (
        "_deadline",
        "_facts",
        "_log",
        "_max_size",
        "_receive",
        "_send",
        "_timeout",
        "answered",
        "body_done",
        "received",
        "rejected",
        "started",
    )

    def __init__(
        self,
        facts: RequestFacts,
        receive: Receive,
        send: Send,
        max_size: int,
        timeout: float,
        logger: structlog.typing.FilteringBoundLogger,
    ) -> None:
        self._facts = facts
        self._receive = receive
        self._send = send
        self._max_size = max_size
        self._timeout = timeout
        self._deadline: float | None = None
        self._log = logger
        self.received = 0
        self.body_done = False
        self.rejected: BodyRejected | None = None
        #: The backend's response start reached the client (before any limit was broken).
        self.started = False
        #: The limit's error response was sent.
        self.answered = False

    async def serve(self, app: ASGIApp, scope: Scope) -> None:
        """Run ``app`` with the body guarded; the limit's answer if it was broken first."""
        try:
            await app(scope, self.receive, self.send)
        except Exception:
            if self.rejected is None or self.started:
                raise
            # The backend failed because its body was cut: the limit's answer stands.
            await self.answer()
            return
        if self.rejected is not None and not self.started:
            await self.answer()

    async def receive(self) -> Message:
        if self.rejected is not None:
            raise self.rejected
        if self.body_done:
            return await self._receive()
        if self._deadline is None:
            self._deadline = asyncio.get_running_loop().time() + self._timeout
        try:
            async with asyncio.timeout_at(self._deadline):
                message = await self._receive()
        except TimeoutError:
            raise self._reject(408, "the request body took too long to arrive") from None
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self._max_size:
                raise self._reject(413, f"the request body is larger than {self._max_size} bytes")
            if not message.get("more_body", False):
                self.body_done = True
        return message

    async def send(self, message: Message) -> None:
        if self.rejected is None:
            if message["type"] == "http.response.start":
                self.started = True
            await self._send(message)
            return
        if self.started:
            raise _Aborted(self.rejected.reason)
        # The backend is answering the error it got from receive(): answer for it, once.
        await self.answer()

    async def answer(self) -> None:
        if self.answered or self.rejected is None:
            return
        self.answered = True
        facts = self._facts
        await send_error(
            self._send, self.rejected.status, self.rejected.reason, facts.request_id, _CLOSE
        )

    def _reject(self, status: int, reason: str) -> BodyRejected:
        self.rejected = BodyRejected(reason, status)
        facts = self._facts
        facts.rejected = reason
        self._log.info(
            "request.body_rejected",
            status=status,
            reason=reason,
            received=self.received,
            response_started=self.started,
        )
        return self.rejected
