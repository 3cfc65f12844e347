"""Runs the legacy WSGI app (Flask) behind the gateway: the only module that imports a2wsgi.

::

    legacy = LegacyApp(flask_app, threads=16, buffer_body_limit=65536, queue_timeout=5.0,
                       request_timeout=30.0)
    async with legacy:                      # the lifespan (switch interval, the loop)
        await legacy(scope, receive, send)  # an ASGI app

Why not ``a2wsgi.WSGIMiddleware`` as it is: for every message of a response (the start, each
chunk, the end) its worker thread posts a coroutine to the event loop and *waits for the loop to
run it* (``run_coroutine_threadsafe(...).result()``), and the loop learns that the call finished
through one more hand-off. A small JSON response costs four round trips between two threads; on a
2-core machine with the threads on different cores each one is a cross-core wake-up. Measured
with ``bench/http_bench.py``: unpinned, this adapter serves 1.6 times what plain a2wsgi serves,
with a p99 of 7.6 ms against 24 ms.

Here the worker thread appends messages to a channel and moves on; it wakes the loop only when the
loop is idle waiting for messages, so a whole small response usually crosses once, and its last
chunk and the end of the response go out in one write. Back-pressure is
kept: a thread that gets more than ``max_pending_bytes`` ahead of the client blocks until the loop
has written them. Request bodies with a ``Content-Length`` up to ``buffer_body_limit`` are read on
the loop before the thread starts; larger and chunked bodies stream through a2wsgi's ``Body``
(one hand-off per read, with back-pressure). Full WSGI behaviour stays: ``close()`` is always
called, ``start_response(..., exc_info)`` may replace headers until the first body byte, the
``write()`` callable works, and ``wsgi.input_terminated`` lets Werkzeug read chunked bodies (with
a2wsgi alone Flask sees an empty body for them).

A client that disconnects during a streamed response makes the thread's next hand-over raise
``ClientDisconnected`` inside the WSGI iteration, which stops the generator and calls its
``close()``, so the thread is freed. Admission to the thread pool is bounded: when every thread is
busy a request waits on the event loop (``gateway.adapters.admission``) at most
``queue_timeout`` seconds, then gets 503 with ``Retry-After``; a small body is read before a
thread is taken, so a client trickling its body holds no thread. While a
handler still produces its response, each write to the client must finish within
``send_timeout`` seconds, or the connection is dropped and the thread told to stop: a client
that stops reading cannot pin a thread.

A request whose WSGI app has not handed over the start of its response (status, headers and
its first body bytes) ``request_timeout`` seconds after its thread started gets a JSON 504.
Python cannot kill a thread: the handler keeps running until it returns on its own. Whatever
it produces later is discarded (its next hand-over raises ``ClientDisconnected`` inside the
WSGI iteration, which also calls the iterable's ``close()``), and its thread takes no other
request until the handler really finishes, so ``threads`` stays an honest bound on the threads
in use: a pool full of stuck handlers answers 503, not an unbounded queue.

``gateway.adapters.legacy_processes`` serves the same contract from worker processes
(``[legacy] isolation = "processes"``), for views that burn CPU while holding the GIL; it
overrides ``_streamed_body`` and ``_serve``, the steps after the request body is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import sys
import threading
from collections.abc import Callable, Generator
from typing import Any, Literal, TypeAlias, cast

import structlog
from a2wsgi.wsgi import Body, build_environ
from starlette.types import Message, Receive, Scope, Send
from werkzeug.exceptions import ClientDisconnected as WerkzeugClientDisconnected

from gateway.adapters.admission import Admission
from gateway.adapters.deadlines import Deadlines
from gateway.adapters.thread_pool import ThreadPool
from gateway.adapters.wsgi_response import (
    BODY,
    END,
    START,
    ClientDisconnected,
    ResponseWriter,
    WSGIApp,
    run_wsgi,
)
from gateway.context import request_facts
from gateway.errors import BodyRejected, refuse, send_error
from gateway.request_body import declared_body_size, read_body

#: How relaying one response ended.
Relayed: TypeAlias = Literal["complete", "timed-out", "client-too-slow"]

log = structlog.get_logger("gateway.legacy")


class LegacyApp:
    """An ASGI app that runs a WSGI app on a bounded thread pool."""

    def __init__(
        self,
        wsgi_app: WSGIApp,
        *,
        threads: int,
        buffer_body_limit: int = 64 * 1024,
        queue_timeout: float = 5.0,
        request_timeout: float | None = None,
        send_timeout: float | None = None,
        switch_interval: float | None = None,
        max_form_parts: int | None = None,
        max_form_memory_size: int | None = None,
        retry_after: int = 5,
        max_pending_bytes: int = 256 * 1024,
    ) -> None:
        self.wsgi_app = wsgi_app
        self.threads = threads
        self._buffer_body_limit = buffer_body_limit
        self._queue_timeout = queue_timeout
        self._request_timeout = request_timeout
        self._send_timeout = send_timeout
        self._switch_interval = switch_interval
        #: The interpreter's switch interval before the lifespan set ``switch_interval``.
        self._previous_switch_interval: float | None = None
        self._max_form_parts = max_form_parts
        self._max_form_memory_size = max_form_memory_size
        self._retry_after = str(retry_after).encode()
        self._max_pending_bytes = max_pending_bytes
        self._pool = ThreadPool(threads, "legacy")
        self._admission = Admission(threads)
        #: Requests answered 503 because no thread came free in time (only the loop counts).
        self._rejections = 0
        #: The server's event loop, from the lifespan (``__aenter__``) on: on Python 3.11
        #: ``asyncio.get_running_loop()`` makes a ``getpid()`` system call, per request.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines: Deadlines | None = None

    @property
    def busy_threads(self) -> int:
        """Threads (or, in ``legacy_processes``, worker processes) serving a request now."""
        return self._admission.busy

    @property
    def admission_waits(self) -> int:
        """Requests that waited for a free thread, since the start (``gateway.metrics``)."""
        return self._admission.waits

    @property
    def admission_rejections(self) -> int:
        """Requests answered 503 because none came free in time, since the start."""
        return self._rejections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # WSGI has no websockets; refuse the handshake like a2wsgi does.
            await send({"type": "websocket.close", "code": 1000})
            return
        if scope["type"] != "http":
            return
        # Served without a lifespan (an ASGI test transport): ask, as every request did.
        loop = self._loop or asyncio.get_running_loop()
        declared = declared_body_size(scope)
        buffer_limit = self._buffer_body_limit
        # Only a request with a body can be a form: a GET pays for no Content-Type scan.
        form = declared != 0 and _is_urlencoded(scope)
        if form:
            # Werkzeug reads a url-encoded form whole into memory, and limits neither its size
            # nor its number of fields (multipart forms have Flask's MAX_FORM_*): the gateway
            # checks both, before a thread is taken, with the form read whole here.
            problem = self._form_size_problem(declared)
            if problem is not None:
                await refuse(scope, send, 413, problem)
                return
            buffer_limit = max(buffer_limit, self._max_form_memory_size or 0)
        # A small body is read whole *before* a thread is taken: a client that trickles its
        # body (or never sends it) must not hold a slot of the pool meanwhile, or a handful of
        # anonymous sockets would answer every legacy request with 503.
        try:
            body, watch_disconnect = await self._request_body(
                scope, receive, loop, declared, buffer_limit
            )
        except ClientDisconnected:
            # Gone before its body was whole: Flask never sees half a body as a whole one.
            _client_gone(scope)
            return
        parts = self._max_form_parts
        if form and parts is not None and _fields(body) > parts:
            await refuse(scope, send, 413, f"a form may have at most {parts} fields")
            return
        await self._serve(scope, receive, send, loop, body, watch_disconnect)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        loop: asyncio.AbstractEventLoop,
        body: Any,
        watch_disconnect: bool,
    ) -> None:
        """Run the request on a thread (waiting on the loop while all are busy) and relay its
        response."""
        if not await self._admit(scope, send, loop):
            return
        admission = self._admission
        try:
            environ = build_wsgi_environ(scope, body)
            channel = _ResponseChannel(loop, self._max_pending_bytes)
            context = contextvars.copy_context()
            self._pool.submit(
                context.run, _run_and_release, self.wsgi_app, environ, channel, admission
            )
        except BaseException:
            admission.release()
            raise
        outcome = await channel.relay(
            send,
            receive if watch_disconnect else None,
            self._start_deadlines(loop),
            self._send_timeout,
        )
        if outcome == "client-too-slow":
            # The thread is told the client is gone (its next hand-over raises), and the
            # response stays incomplete: the server closes the connection.
            self._client_too_slow(scope)
        elif outcome == "timed-out":
            await self._timed_out(scope, send)

    def _start_deadlines(self, loop: asyncio.AbstractEventLoop) -> Deadlines | None:
        """The ``request_timeout`` deadlines on ``loop`` (one timer for all requests)."""
        if self._request_timeout is None:
            return None
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            deadlines = self._deadlines = Deadlines(loop, self._request_timeout)
        return deadlines

    async def _admit(self, scope: Scope, send: Send, loop: asyncio.AbstractEventLoop) -> bool:
        """Wait (on the loop) for a free thread or worker; ``False`` once the client has been
        answered 503 + Retry-After, no slot having come free within ``queue_timeout``."""
        if await self._admission.acquire(loop, self._queue_timeout):
            return True
        self._rejections += 1
        await send_error(
            send,
            503,
            "the legacy application is busy, try again later",
            request_id_of(scope),
            [(b"retry-after", self._retry_after)],
        )
        return False

    def _client_too_slow(self, scope: Scope) -> None:
        log.warning("legacy.client_too_slow", send_timeout=self._send_timeout)
        with contextlib.suppress(LookupError):
            request_facts(scope).aborted = True

    async def _timed_out(self, scope: Scope, send: Send) -> None:
        log.warning("legacy.request_timeout", timeout=self._request_timeout)
        await send_error(
            send, 504, "the legacy application did not answer in time", request_id_of(scope)
        )

    def _form_size_problem(self, declared: int | None) -> str | None:
        limit = self._max_form_memory_size
        if limit is None:
            return None
        if declared is None or declared > limit:
            return f"a url-encoded form must declare its size, at most {limit} bytes"
        return None

    async def _request_body(
        self,
        scope: Scope,
        receive: Receive,
        loop: asyncio.AbstractEventLoop,
        declared: int | None,
        buffer_limit: int,
    ) -> tuple[Any, bool]:
        """The ``wsgi.input`` stream, and whether the request body is already fully read."""
        if declared == 0:
            return io.BytesIO(b""), True
        if declared is not None and declared <= buffer_limit:
            body = await read_body(receive, declared)
            if body is None:
                raise ClientDisconnected
            return io.BytesIO(body), True
        return self._streamed_body(loop, _refuse_disconnect(receive, scope)), False

    def _streamed_body(self, loop: asyncio.AbstractEventLoop, receive: Receive) -> Any:
        """What ``_serve`` gets for a body too large (or chunked) to read before it runs."""
        return StreamedBody(loop, receive)  # type: ignore[arg-type]

    def close(self) -> None:
        """Stop taking work; threads finish what they run."""
        self._pool.close()

    async def __aenter__(self) -> LegacyApp:
        # The lifespan runs on the loop that serves the requests (uvicorn, TestClient).
        self._loop = asyncio.get_running_loop()
        if self._switch_interval is not None:
            # Process-wide: how long a thread that holds the GIL (a view burning CPU) keeps the
            # event loop waiting for it, at most, before the interpreter asks it to let go.
            self._previous_switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(self._switch_interval)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._loop = None
        if self._previous_switch_interval is not None:
            sys.setswitchinterval(self._previous_switch_interval)
            self._previous_switch_interval = None
        self.close()


def _fields(body: Any) -> int:
    """Fields in a url-encoded body read whole (``a=1&b=2``: 2); 0 for a streamed one."""
    return body.getvalue().count(b"&") + 1 if isinstance(body, io.BytesIO) else 0


def _is_urlencoded(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/x-www-form-urlencoded"
    return False


def _client_gone(scope: Scope) -> None:
    """Say so, once: in its own event and on the access line (``disconnected``)."""
    log.info("legacy.client_disconnected", during="request body")
    with contextlib.suppress(LookupError):
        request_facts(scope).disconnected = True


def _refuse_disconnect(receive: Receive, scope: Scope) -> Receive:
    """a2wsgi reads a disconnect as the end of the body, so Flask would take a cut upload for
    a whole one; this ``receive`` turns it into the error Flask gets for a broken body."""

    async def receive_body() -> Message:
        message = await receive()
        if message["type"] == "http.disconnect":
            _client_gone(scope)
            raise BodyRejected("the client disconnected during the request body", 400)
        return message

    return receive_body


class StreamedBody(Body):
    """a2wsgi's streaming ``wsgi.input``; a body cut by the limits middleware reaches Flask as
    Werkzeug's ``ClientDisconnected`` (an HTTP error it answers without logging a traceback;
    the limits middleware sends its own 413 or 408 in place of that answer).

    The reading methods behave as a file's (``io.BytesIO``'s) do, which is what PEP 3333 asks
    and what a small, buffered body already gets: a2wsgi 1.10's ``readlines()`` adds a newline
    to a last line that has none and raises ``IndexError`` on an empty body,
    ``readlines(hint)`` returns ``hint`` lines padded with empty ones (so a
    ``while lines := f.readlines(8192)`` loop never ends), ``readline(limit)`` can return a
    short line before the body has ended, ``read(-2)`` returns what happens to be buffered
    minus two bytes, and ``None`` (a file's "no limit") raises ``TypeError`` in all three.
    (The last two were found by ``tests/conformance/test_wsgiref_validate.py``.)
    """

    def read(self, size: int | None = -1) -> bytes:
        data: bytes = super().read(-1 if size is None or size < 0 else size)
        return data

    def _receive_more_data(self) -> bytes:
        try:
            data: bytes = super()._receive_more_data()
        except BodyRejected as exc:
            raise WerkzeugClientDisconnected(exc.reason) from exc
        return data

    def readline(self, limit: int | None = -1) -> bytes:
        if limit is None:
            limit = -1
        buffer = self.buffer
        while True:
            end = buffer.find(b"\n", 0, limit if limit >= 0 else None)
            if end != -1:
                size = end + 1
                break
            if 0 <= limit <= len(buffer):
                size = limit
                break
            if not self._has_more:
                size = len(buffer) if limit < 0 else min(limit, len(buffer))
                break
            buffer.extend(self._receive_more_data())
        line = bytes(buffer[:size])
        del buffer[:size]
        return line

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Generator[bytes, None, None]:
        while line := self.readline():
            yield line


def request_id_of(scope: Scope) -> str | None:
    try:
        return request_facts(scope).request_id
    except LookupError:
        return None


def build_wsgi_environ(scope: Scope, body: Any) -> dict[str, Any]:
    headers = scope["headers"]
    cookies = [value for name, value in headers if name == b"cookie"]
    if len(cookies) > 1:
        # HTTP/2 clients send each cookie as its own header; a2wsgi would join them with ","
        # (right for other headers), which makes Flask lose every cookie after the first.
        headers = [(n, v) for n, v in headers if n != b"cookie"] + [
            (b"cookie", b"; ".join(cookies))
        ]
        scope = {**scope, "headers": headers}
    if any(b"_" in name for name, _ in headers):
        # a2wsgi (like every WSGI server) maps "X-User_Id" and "X-User-Id" to the same environ
        # key HTTP_X_USER_ID; a client could smuggle a header past a check on the other spelling.
        dropped = sorted({name.decode("latin-1") for name, _ in headers if b"_" in name})
        log.debug("legacy.headers_dropped", headers=dropped)
        scope = {**scope, "headers": [(n, v) for n, v in headers if b"_" not in n]}
    # A new plain dict already (a2wsgi's Environ is a TypedDict): no copy needed.
    environ = cast("dict[str, Any]", build_environ(scope, body))  # type: ignore[arg-type]
    # The body stream ends where the request body ends, so Werkzeug may read it without a
    # Content-Length (chunked uploads).
    environ["wsgi.input_terminated"] = True
    environ["wsgi.errors"] = sys.stderr
    return environ


def _run_and_release(
    app: WSGIApp, environ: dict[str, Any], channel: _ResponseChannel, admission: Admission
) -> None:
    """The worker-thread side of one request. The slot goes back when the handler has really
    finished (``close()`` included), whatever the client saw: a stuck handler keeps its slot.

    Requests that wait for a slot wait on the event loop, and each grant passes through it
    (``Admission.release``), rather than a finishing thread taking the next request straight
    from a queue: that was tried, and with views that burn CPU it kept every thread runnable
    and the event loop starved of the GIL (the new route's p99 in ``bench/saturation.py
    --cpu-bound`` went from 89-92 ms to 334-349 ms, its p50 from 16 to 62-80 ms).
    """
    try:
        run_wsgi(app, environ, channel)
    finally:
        admission.release()


class _ResponseChannel(ResponseWriter):
    """Carries one response from the worker thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_pending_bytes: int) -> None:
        super().__init__()
        self._loop = loop
        self._max_pending = max_pending_bytes
        self._lock = threading.Lock()
        # Made only when the thread must wait for the client to drain (back-pressure): most
        # responses never need it, and a Condition costs a few µs to build.
        self._room: threading.Condition | None = None
        self._messages: list[tuple[Any, ...]] = []
        self._pending_bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._done = False
        self._error: BaseException | None = None
        self._client_gone = False
        self._timed_out = False

    # -- worker thread -------------------------------------------------------------------------

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._done:
                log.error("legacy.close_failed", exc_info=exc)
                return
            self._error = exc
            self._done = True
            self._wake()

    def _post(self, messages: list[tuple[Any, ...]], size: int, done: bool = False) -> None:
        with self._lock:
            if self._client_gone:
                raise ClientDisconnected
            self._messages.extend(messages)
            self._pending_bytes += size
            self._done = done
            self._wake()
            while self._pending_bytes > self._max_pending and not self._client_gone:
                if self._room is None:
                    self._room = threading.Condition(self._lock)
                self._room.wait()
            if self._client_gone:
                raise ClientDisconnected

    def _wake(self) -> None:
        # Called with the lock held. Only an idle loop needs waking; a busy one will look again.
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            self._loop.call_soon_threadsafe(_resolve, waiter)

    # -- event loop ----------------------------------------------------------------------------

    async def relay(
        self,
        send: Send,
        receive: Receive | None,
        deadlines: Deadlines | None,
        send_within: float | None = None,
    ) -> Relayed:
        """Send what the thread hands over until the response ends or the client goes.

        ``timed-out`` (nothing sent): the response did not start before its deadline in
        ``deadlines`` (``request_timeout``). ``client-too-slow``: a send to the client did not
        finish within ``send_within`` seconds while the thread was still producing (the thread
        is then told the client is gone, so a reader that stops reading cannot pin it for
        ever).
        """
        watcher: asyncio.Task[None] | None = None
        if deadlines is not None:
            deadlines.add(self, self._expire)
        try:
            while True:
                with self._lock:
                    batch, self._messages = self._messages, []
                    done, error = self._done, self._error
                    if self._timed_out:
                        return "timed-out"
                    waiter: asyncio.Future[None] | None = None
                    if not batch and not done and not self._client_gone:
                        waiter = self._waiter = self._loop.create_future()
                if batch:
                    if done or send_within is None:
                        # The thread has finished: a slow client holds no thread, only its own
                        # connection. (And small responses pay for no timer.)
                        sent = await send_batch(send, batch)
                    else:
                        try:
                            async with asyncio.timeout(send_within):
                                sent = await send_batch(send, batch)
                        except TimeoutError:
                            return "client-too-slow"
                    with self._lock:
                        self._pending_bytes -= sent
                        self._notify_room()
                    continue
                if error is not None:
                    raise error
                if done or waiter is None:
                    return "complete"
                if watcher is None and receive is not None and self._headers_sent:
                    # A streamed response: watch for the client leaving, so the thread stops.
                    watcher = asyncio.create_task(watch_disconnect(receive, self._hang_up))
                await waiter
        finally:
            if deadlines is not None:
                deadlines.discard(self)
            if watcher is not None:
                watcher.cancel()
            self._hang_up()

    def _notify_room(self) -> None:
        """Wake the thread if it waits for room (call with ``self._lock`` held)."""
        if self._room is not None:
            self._room.notify_all()

    def _expire(self) -> None:
        """The request timeout: if the thread has not started its response, abandon it."""
        with self._lock:
            if self._headers_sent or self._done or self._client_gone:
                return
            # The thread's next hand-over raises ClientDisconnected: its output is discarded.
            self._timed_out = True
            waiter = self._client_left()
        _resolve(waiter)

    def _hang_up(self) -> None:
        """Tell the thread the client is gone (a no-op once the response is complete)."""
        with self._lock:
            if self._done:
                return
            waiter = self._client_left()
        _resolve(waiter)

    def _client_left(self) -> asyncio.Future[None] | None:
        """Mark the client gone, wake the thread if it waits for room, and take the loop's
        waiter (call with ``self._lock`` held; resolve the waiter after releasing it)."""
        self._client_gone = True
        self._notify_room()
        waiter, self._waiter = self._waiter, None
        return waiter


async def watch_disconnect(receive: Receive, hang_up: Callable[[], None]) -> None:
    """Call ``hang_up`` when the client disconnects: run as a task while a response streams
    (and cancelled when it ends), so the view stops producing for nobody."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            hang_up()
            return


def _resolve(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


async def send_batch(send: Send, batch: list[tuple[Any, ...]]) -> int:
    """Send a batch. Each WSGI chunk stays one ASGI message (apps that stream server-sent
    events rely on their chunk boundaries); only the last chunk and the end travel together,
    so a small response is one write."""
    sent = 0
    last = len(batch) - 1
    for index, item in enumerate(batch):
        kind = item[0]
        if kind == START:
            await send({"type": "http.response.start", "status": item[1], "headers": item[2]})
        elif kind == BODY:
            sent += len(item[1])
            if index < last and batch[index + 1][0] == END:
                continue  # sent with the end, below
            await send({"type": "http.response.body", "body": item[1], "more_body": True})
        else:
            body = batch[index - 1][1] if index > 0 and batch[index - 1][0] == BODY else b""
            await send({"type": "http.response.body", "body": body, "more_body": False})
    return sent
