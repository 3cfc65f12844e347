"""The HTTP/1.1 connection protocol ``gateway serve`` gives uvicorn: httptools, plus head limits.

uvicorn's httptools protocol (the fast one, picked by ``http="auto"`` when httptools is installed)
has no limit on the size of a request head and no limit on the time to receive it: httptools
buffers a header of any length, and the keep-alive timer is cancelled on every byte received, so
a client trickling a head one byte a second holds its connection for ever (uvicorn issue #157;
``h11_max_incomplete_event_size`` applies to the pure-Python h11 protocol only, which answers a
too-large head with 400, and h11 costs a large share of the throughput). This subclass adds both:

- **Head size**: more than ``max_head_size`` bytes of request line and headers → 431, JSON with
  a request id, connection closed. Counted on the bytes received while a head is incomplete, so
  a head that never ends is cut as soon as it passes the limit, not when it ends.
- **Head time**: the head must be complete within ``head_timeout`` seconds of the connection
  opening, or of its first byte on a kept-alive connection → 408 (or a silent close when no
  byte of it arrived), connection closed. The same clock also covers the unread rest of a
  request body after the response to it was sent. One timer per connection, re-armed only when
  it fires, so the per-request cost is one clock read.
- Parser errors (malformed request line, lower-case method, bad header) get the gateway's JSON
  400 with a request id instead of uvicorn's plain-text one.
- **Framing** that two parsers could read differently is a 400: a ``Content-Length`` that is
  not digits only (``5\t``), a transfer coding other than ``chunked`` (``gzip, chunked``).
- A **websocket handshake with a body** is a 400 at once (it used to hang unanswered).
- An **absolute-form target** (``GET http://host/path``) names the host: its authority replaces
  the ``Host`` header, as RFC 9112 3.2.2 says a server must, so ``server.allowed_hosts`` judges
  the host the request really names.
- A **half-closed** connection (the client sent its request, then ``shutdown(SHUT_WR)``) still
  gets its response, then is closed; uvicorn closed it at once, answer unsent.
- An **HTTP/1.0** response with no ``Content-Length`` ends by closing the connection, as
  HTTP/1.0 frames it; uvicorn sent ``Transfer-Encoding: chunked``, which HTTP/1.0 lacks.
- **Trailers** of a chunked request body are dropped. uvicorn appends them to the very list that
  is ``scope["headers"]`` (httptools reports them through the same callback as headers), so a
  trailer arriving with the head became a request header: an ``Authorization`` or a trusted
  ``X-Forwarded-For`` sent after the body was believed. ASGI has no request trailers; a request
  trailer is counted and logged at debug level, never seen by the gateway or a backend.

::

    factory = HttpProtocolFactory(max_head_size=32768, head_timeout=10.0)
    uvicorn.run(app, http=factory.as_uvicorn_http())

The factory, not a configured subclass, is what uvicorn gets: ``--workers`` pickles the config
into spawned worker processes, and a module-level class with a dataclass of limits pickles.
This leans on uvicorn's ``HttpToolsProtocol`` internals (``parser``, ``url``, ``headers``,
``cycle``, the parser callbacks); ``tests/test_e2e_hardening.py`` and
``tests/test_e2e_security.py`` drive a real server through every path here, so an upstream
change shows up as a failing test.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import httptools
import structlog
from starlette.types import Message
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from gateway.context import FACTS_KEY, RequestFacts
from gateway.errors import error_body
from gateway.http_coalesce import HeadWithFirstBody
from gateway.metrics.recorder import STATE_KEY
from gateway.middleware.request_context import new_request_id

log = structlog.get_logger("gateway.http")

#: Request line framing (method, spaces, " HTTP/1.1\r\n") and the blank line, counted on top of
#: the URL and headers when a head's exact size is computed.
_HEAD_FRAMING = 32


class _HeadTooLarge(Exception):
    """Raised inside a parser callback: stops httptools before it builds the request."""


class _BadFraming(Exception):
    """A body framing header that parsers could read differently: refused with a 400.

    httptools keeps trailing whitespace in ``Content-Length: 5\t`` and accepts any coding list
    ending in ``chunked`` (``gzip, chunked``); a proxy in front may frame the same bytes another
    way (request smuggling), and nobody here decodes gzip. A length must be digits only and the
    only transfer coding is ``chunked``.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class _UpgradeWithBody(Exception):
    """A websocket handshake that declares a body: refused inside the parser callback.

    uvicorn starts no request for an upgrade until the parser reports it, which llhttp does only
    after a body it is still waiting for; the connection would hang unanswered, past every
    timer. A handshake is a GET with no body (RFC 6455 4.1), so this one gets a 400 at once.
    """


class GatewayHttpProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        max_head_size: int = 32 * 1024,
        head_timeout: float = 10.0,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._max_head_size = max_head_size
        self._head_timeout = head_timeout
        #: True from the end of one request (or the connection's start) until the next head is
        #: complete: bytes received then are head bytes.
        self._awaiting_head = True
        self._head_bytes = 0
        self._chunk_size = 0
        #: Loop time when the head being received started; ``None`` while none is.
        self._head_started: float | None = None
        self._head_timer: asyncio.TimerHandle | None = None
        self._rejected = False

    # -- connection ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A connection that never sends a head is cut too (uvicorn arms no timer until the
        # first response is complete).
        self._head_started = self.loop.time()
        self._head_timer = self.loop.call_later(self._head_timeout, self._check_head_deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The client left before its response was whole. uvicorn then drops whatever the
            # app still sends, so a streamed response would otherwise end, as far as the app
            # and the access line can tell, like a delivered one.
            facts = cycle.scope.get(FACTS_KEY)
            if isinstance(facts, RequestFacts):
                facts.disconnected = True
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        self._unset_keepalive_if_required()
        self._chunk_size = len(data)
        if self._awaiting_head:
            self._head_bytes += self._chunk_size
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._reject(431, "the request head is too large")
            elif isinstance(exc.__context__, _BadFraming):
                self._reject(400, exc.__context__.reason)
            elif isinstance(exc.__context__, _UpgradeWithBody):
                self._reject(400, "a websocket handshake must not have a body")
            else:
                self._reject(400, "invalid HTTP request", detail=str(exc))
            return
        if self._awaiting_head and self._head_bytes > self._max_head_size:
            self._reject(431, "the request head is too large")

    # asyncio.Protocol.eof_received may return True (keep the transport open); uvicorn's
    # annotation says None only.
    def eof_received(self) -> bool | None:  # type: ignore[override]
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # A half-close: the client has sent all it will, and still reads. Keep the
            # transport open to answer; uvicorn closes it once the response is complete.
            cycle.keep_alive = False
            return True
        return None  # nothing in flight: close

    def handle_websocket_upgrade(self) -> None:
        # The websocket protocol owns the transport from here on; this one's timer is done.
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().handle_websocket_upgrade()

    def send_400_response(self, msg: str) -> None:
        self._reject(400, "invalid HTTP request", detail=msg)

    # -- parser callbacks ----------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._awaiting_head:
            # After the head: a trailer field of a chunked body (see the module docstring).
            log.debug("http.trailer_dropped", name=name[:64].decode("latin-1"))
            return
        super().on_header(name, value)
        # Checked as each header arrives: no second pass over the head.
        name = self.headers[-1][0]  # lower-cased by uvicorn
        if name == b"content-length" and not value.isdigit():
            raise _BadFraming("the Content-Length header is not a number")
        if name == b"transfer-encoding" and value.lower() != b"chunked":
            raise _BadFraming("the only transfer coding accepted is chunked")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_started is None:
            self._head_started = self.loop.time()

    def on_headers_complete(self) -> None:
        if (
            self._head_bytes > self._max_head_size or self._chunk_size > self._max_head_size
        ) and self._exact_head_size() > self._max_head_size:
            raise _HeadTooLarge
        if self.parser.should_upgrade() and self._should_upgrade() and self._declares_body():
            raise _UpgradeWithBody
        authority = _absolute_form_authority(self.url)
        if authority is not None:
            # In place: this list becomes scope["headers"].
            self.headers[:] = [(n, v) for n, v in self.headers if n != b"host"]
            self.headers.append((b"host", authority))
        self._awaiting_head = False
        self._head_bytes = 0
        self._head_started = None
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle is not previous:  # not a websocket upgrade
            # The head and the first body bytes in one write (gateway.http_coalesce).
            cycle.transport = HeadWithFirstBody(self.transport, self.loop)  # type: ignore[assignment]
            if self.scope.get("http_version") == "1.0":
                cycle.send = _close_delimited(cycle)  # type: ignore[method-assign,assignment]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._awaiting_head = True

    def on_response_complete(self) -> None:
        super().on_response_complete()
        cycle = self.cycle
        if cycle is not None and cycle.more_body and self._head_started is None:
            # Answered before its body was read: the rest of that body, and the next head,
            # must arrive in time too, or a client could trickle an unread body for ever.
            self._head_started = self.loop.time()

    # -- limits --------------------------------------------------------------------------------

    def _declares_body(self) -> bool:
        for name, value in self.headers:
            if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                return True
        return False

    def _exact_head_size(self) -> int:
        size = len(self.url) + _HEAD_FRAMING
        for name, value in self.headers:
            size += len(name) + len(value) + 4
        return size

    def _check_head_deadline(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        started = self._head_started
        if started is not None:
            remaining = started + self._head_timeout - self.loop.time()
            if remaining <= 0:
                if self._awaiting_head and self._head_bytes:
                    self._reject(408, "the request head took too long to arrive")
                else:
                    log.debug("http.idle_connection_closed", client=_address(self.client))
                    self.transport.close()
                return
            self._head_timer = self.loop.call_later(remaining, self._check_head_deadline)
            return
        # Busy with a request (or idle between requests, which uvicorn's keep-alive timer
        # covers): look again later.
        self._head_timer = self.loop.call_later(self._head_timeout, self._check_head_deadline)

    def _reject(self, status: int, message: str, *, detail: str | None = None) -> None:
        """Answer with a JSON error, close the connection, log one line."""
        if self._rejected or self.transport.is_closing():
            return
        self._rejected = True
        request_id = new_request_id()
        body = error_body(status, message, request_id)
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: ",
                str(len(body)).encode("ascii"),
                b"\r\nx-request-id: ",
                request_id.encode("ascii"),
                b"\r\nconnection: close\r\n\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
        recorder = self.app_state.get(STATE_KEY)
        if recorder is not None:
            recorder.rejected(status, message)
        log.warning(
            "http.request_rejected",
            request_id=request_id,
            status=status,
            reason=message,
            detail=detail,
            client=_address(self.client),
        )


def _close_delimited(cycle: RequestResponseCycle) -> Callable[[Message], Awaitable[None]]:
    """An HTTP/1.0 response's ``send``: with no ``Content-Length``, the body is written as it
    comes and the connection's close ends it (HTTP/1.0 has no chunked coding).

    uvicorn's cycle picks chunked framing when no length is given; telling it that the body
    is unframed (``chunked_encoding = False``) with an unbounded length, then the exact length
    left on the last message, makes it write the bytes unframed and close (HTTP/1.0 is never
    kept alive here).
    """
    send: Callable[[Any], Awaitable[None]] = cycle.send
    unframed = False

    async def send_close_delimited(message: Message) -> None:
        nonlocal unframed
        if message["type"] == "http.response.start":
            names = {name.lower() for name, _ in message.get("headers", ())}
            if not names & {b"content-length", b"transfer-encoding"}:
                unframed = True
                cycle.chunked_encoding = False
                cycle.expected_content_length = sys.maxsize
        elif unframed and not message.get("more_body", False):
            cycle.expected_content_length = len(message.get("body", b""))
        await send(message)

    return send_close_delimited


def _absolute_form_authority(target: bytes) -> bytes | None:
    """``evil.example:80`` for ``http://evil.example:80/x``; ``None`` for an origin-form target."""
    scheme, separator, rest = target.partition(b"://")
    if not separator or scheme.lower() not in (b"http", b"https"):
        return None
    return rest.split(b"/", 1)[0].split(b"?", 1)[0]


def _address(client: tuple[str, int] | None) -> str | None:
    return f"{client[0]}:{client[1]}" if client else None


@dataclass(frozen=True, slots=True)
class HttpProtocolFactory:
    """Builds a ``GatewayHttpProtocol`` per connection with these limits; picklable."""

    max_head_size: int = 32 * 1024
    head_timeout: float = 10.0

    def __call__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> GatewayHttpProtocol:
        return GatewayHttpProtocol(
            config,
            server_state,
            app_state,
            _loop,
            max_head_size=self.max_head_size,
            head_timeout=self.head_timeout,
        )

    def as_uvicorn_http(self) -> type[asyncio.Protocol]:
        """For ``uvicorn.run(http=...)``, typed as the protocol class uvicorn calls it as."""
        return cast(type[asyncio.Protocol], self)
