"""The legacy app in worker processes (``[legacy] isolation = "processes"``), for apps whose views
burn CPU in pure Python.

Such a view holds the GIL of the process it runs in. On the gateway's threads it makes the event
loop, so every new route, wait for it: with the pool full of 10 ms CPU-bound views the new
route's p99 went from 0.36 ms to 63-74 ms, and no switch interval or pool size came near 2x
(``bench/saturation.py --cpu-bound``; README). Here each view runs in one of ``processes`` worker
processes the gateway starts in its lifespan, restarts when one dies and stops at shut-down: one
port, one config, one log stream::

    legacy = ProcessLegacyApp(settings, wsgi_app, processes=4, request_timeout=30.0)
    async with legacy:                      # starts the workers, each loads the app
        await legacy(scope, receive, send)  # an ASGI app, as LegacyApp

It is a ``LegacyApp`` whose admitted requests go to a process instead of a thread: the same
admission (``queue_timeout`` -> 503 with ``Retry-After``), form and body limits, small bodies
read before admission, environ (built here, sent as plain data), status and header checks,
``close()``, ``exc_info``, ``write()``, streamed request bodies (pulled a chunk at a time),
streamed responses with back-pressure (the worker blocks while the socket is full), a client
that disconnects stopping the stream (the worker's next chunk raises inside the iteration),
``send_timeout``. The identity and request id reach Flask as on threads: the worker rebuilds
``environ["asgi.scope"]`` with the gateway's facts, so ``gateway.flask_support`` works, and
its log lines carry the request id.

What differs, plainly:

- ``request_timeout`` *kills* a worker whose view has not started its response (504), and
  starts another: a stuck view no longer holds its slot until it returns, as a thread must.
  A worker that dies (a crash, ``os._exit``, the OOM killer) answers its request 502 with the
  request id (or, mid-response, the connection is cut), and is replaced; while a replacement
  loads the app, that slot is busy.
- Each request pays a hand-off to another process (a pickled environ there, the response
  back): measured in README's performance section against the thread hand-off.
- Each worker holds its own copy of the app: module-level state (caches, counters,
  connection pools) is per process, and memory grows with ``processes``.
- OpenTelemetry spans do not continue into the worker (the request's span in the gateway
  still covers it), and ``switch_interval`` does not apply (nothing shares a GIL with views).
- A view's threads, if it starts any, live in its worker process.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

import structlog
from starlette.types import Receive, Scope, Send

from gateway.adapters.frames import ERROR, MORE, STOPPED
from gateway.adapters.legacy import (
    LegacyApp,
    Relayed,
    build_wsgi_environ,
    request_id_of,
    send_batch,
    watch_disconnect,
)
from gateway.adapters.legacy_worker import facts_for_worker
from gateway.adapters.legacy_worker_handle import WorkerDied, WorkerHandle
from gateway.adapters.wsgi_response import END, START, WSGIApp
from gateway.context import ENVIRON_SCOPE_KEY, request_facts
from gateway.errors import BodyRejected, StartupError, send_error
from gateway.settings import Settings

log = structlog.get_logger("gateway.legacy")

#: Seconds a worker gets to finish its request at shut-down before it is killed.
STOP_GRACE = 10.0
#: Seconds between attempts to replace a worker whose replacement failed to start.
RESTART_BACKOFF = 1.0
#: Environ keys that hold objects of the gateway's process; the worker sets its own.
_LOCAL_KEYS = (ENVIRON_SCOPE_KEY, "wsgi.input", "wsgi.errors")


class LegacyAppError(Exception):
    """The WSGI app raised in a worker process; the message is the traceback there."""


class _TimedOut(Exception):
    """The worker did not start its response within ``request_timeout``."""


class ProcessLegacyApp(LegacyApp):
    """An ASGI app that runs a WSGI app in worker processes."""

    def __init__(
        self, settings: Settings, wsgi_app: WSGIApp, *, processes: int, **options: Any
    ) -> None:
        # `wsgi_app` is the gateway's own copy (the inventory and the session codec read it);
        # the workers load theirs from `settings`, as the gateway loaded this one.
        super().__init__(wsgi_app, threads=processes, switch_interval=None, **options)
        self._settings = settings
        # (LegacyApp's admission, one slot per worker process, bounds the requests in flight.)
        self._workers = [WorkerHandle(index) for index in range(processes)]
        self._idle: list[WorkerHandle] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = False

    @property
    def worker_pids(self) -> list[int | None]:
        return [worker.pid for worker in self._workers]

    @property
    def worker_exit_statuses(self) -> list[int | None]:
        """Each worker's exit status once it has ended (``None``: running, or not started)."""
        return [worker.exit_status for worker in self._workers]

    async def __aenter__(self) -> ProcessLegacyApp:
        await super().__aenter__()
        starts = [worker.start(self._settings) for worker in self._workers]
        results = await asyncio.gather(*starts, return_exceptions=True)
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            await self._stop_workers()
            if isinstance(failures[0], StartupError):
                raise failures[0]
            raise StartupError(f"legacy worker processes failed to start: {failures[0]!r}")
        self._idle = list(self._workers)
        self._running = True
        log.info("legacy.workers_started", pids=self.worker_pids)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._running = False
        for task in list(self._tasks):
            task.cancel()
        await self._stop_workers()
        await super().__aexit__(*exc_info)

    async def _stop_workers(self) -> None:
        await asyncio.gather(*(worker.stop(STOP_GRACE) for worker in self._workers))

    def _streamed_body(self, loop: asyncio.AbstractEventLoop, receive: Receive) -> Any:
        # The worker pulls each chunk (MORE), and the relay answers it from `receive`.
        return receive

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        loop: asyncio.AbstractEventLoop,
        body: Any,
        watch_disconnect: bool,
    ) -> None:
        if not self._running:
            raise RuntimeError('isolation = "processes" serves only inside its lifespan')
        if not await self._admit(scope, send, loop):
            return
        worker = self._idle.pop()
        if worker.exit_status is not None and not await self._revive(worker):
            await _worker_died(scope, send)
            return
        seq = worker.next_request()
        environ = build_wsgi_environ(scope, None)
        for key in _LOCAL_KEYS:
            environ.pop(key, None)
        environ["wsgi.multithread"] = False
        small = isinstance(body, io.BytesIO)
        try:
            facts = request_facts(scope)
        except LookupError:
            facts = None
        worker.send(
            ("request", seq, environ, facts_for_worker(facts), body.getvalue() if small else None)
        )
        relay = _Relay(
            worker,
            seq,
            send,
            None if small else body,
            request_timeout=self._request_timeout,
            send_timeout=self._send_timeout,
        )
        try:
            outcome = await relay.run(receive if watch_disconnect else None)
        except WorkerDied:
            self._replace(worker, "died")
            if relay.started:
                raise LegacyAppError("the legacy worker process died mid-response") from None
            await _worker_died(scope, send)
            return
        except _TimedOut:
            self._replace(worker, "request_timeout")
            if relay.started:
                return  # the client had gone already (a hang-up that did not stop the view)
            await self._timed_out(scope, send)
            return
        except LegacyAppError:
            self._free(worker)
            raise
        except BaseException:
            # Cancelled, or the server failed to send: the worker's state is unknown.
            self._replace(worker, "request abandoned")
            raise
        self._free(worker)
        if outcome == "client-too-slow":
            self._client_too_slow(scope)

    async def _revive(self, worker: WorkerHandle) -> bool:
        """A worker that died while idle (killed, out of memory): start its replacement for
        the request that holds its slot, rather than answer it 502. ``False``: it failed to
        start (then it is retried in the background, and its slot stays busy until then)."""
        log.warning(
            "legacy.worker_replaced",
            worker=worker.index,
            pid=worker.pid,
            exit_status=worker.exit_status,
            reason="died while idle",
        )
        await worker.kill()
        try:
            await worker.start(self._settings)
        except StartupError as exc:
            log.error("legacy.worker_restart_failed", worker=worker.index, error=str(exc))
            self._replace(worker, "died while idle")
            return False
        return True

    def _free(self, worker: WorkerHandle) -> None:
        self._idle.append(worker)
        self._admission.release()

    def _replace(self, worker: WorkerHandle, reason: str) -> None:
        """Kill the worker (if it still runs) and start another in its place, in the
        background; its slot stays busy until the new one is ready."""
        task = asyncio.create_task(self._restart(worker, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _restart(self, worker: WorkerHandle, reason: str) -> None:
        await worker.kill()
        log.warning(
            "legacy.worker_replaced",
            worker=worker.index,
            pid=worker.pid,
            exit_status=worker.exit_status,
            reason=reason,
        )
        while self._running:
            try:
                await worker.start(self._settings)
            except StartupError as exc:
                log.error("legacy.worker_restart_failed", worker=worker.index, error=str(exc))
                await asyncio.sleep(RESTART_BACKOFF)
                continue
            self._free(worker)
            return


async def _worker_died(scope: Scope, send: Send) -> None:
    await send_error(
        send, 502, "the legacy application's worker process died", request_id_of(scope)
    )


class _Relay:
    """Relays one response from a worker to the client (and the request body the other way)."""

    def __init__(
        self,
        worker: WorkerHandle,
        seq: int,
        send: Send,
        body: Receive | None,
        *,
        request_timeout: float | None,
        send_timeout: float | None,
    ) -> None:
        self._worker = worker
        self._seq = seq
        self._send = send
        self._body = body
        self._request_timeout = request_timeout
        self._send_timeout = send_timeout
        #: The response's start reached the client.
        self.started = False
        #: The client is gone (or too slow): the worker was told to stop; output is dropped.
        self._hung_up = False
        self._deadline: asyncio.Timeout | None = None

    async def run(self, receive: Receive | None) -> Relayed:
        """Until the worker ends the request: ``complete`` or ``client-too-slow``; raises
        ``WorkerDied``, ``LegacyAppError`` or ``_TimedOut``."""
        outcome: Relayed = "complete"
        watcher: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(self._request_timeout) as deadline:
                self._deadline = deadline
                while True:
                    frame = await self._worker.read()
                    kind = frame[0][0]
                    if kind == MORE:
                        await self._pull()
                        continue
                    if kind == ERROR:
                        raise LegacyAppError(frame[0][1])
                    if kind == STOPPED:
                        return outcome
                    if kind == START:
                        self.started = True
                        deadline.reschedule(None)
                    if not self._hung_up and not await self._forward(frame):
                        outcome = "client-too-slow"
                    if frame[-1][0] == END:
                        return outcome
                    if watcher is None and receive is not None:
                        # A streamed response: watch for the client leaving, so the view stops.
                        watcher = asyncio.create_task(watch_disconnect(receive, self._hang_up))
        except TimeoutError:
            if self._deadline is not None and self._deadline.expired():
                raise _TimedOut from None
            raise
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _forward(self, frame: list[tuple[Any, ...]]) -> bool:
        """Send a frame to the client; ``False`` when it was too slow to take it."""
        send_within = self._send_timeout
        if frame[-1][0] == END or send_within is None:
            await send_batch(self._send, frame)
            return True
        try:
            async with asyncio.timeout(send_within):
                await send_batch(self._send, frame)
        except TimeoutError:
            self._hang_up()
            return False
        return True

    async def _pull(self) -> None:
        """The worker's app reads past what it has: pass the next chunk the client sends."""
        if self._body is None:
            self._worker.send(("body", self._seq, b"", False))
            return
        try:
            message = await self._body()
        except BodyRejected as exc:
            self._worker.send(("body-error", self._seq, exc.reason))
            return
        more = message.get("more_body", False)
        self._worker.send(("body", self._seq, message.get("body", b""), more))

    def _hang_up(self) -> None:
        """Tell the worker the client is gone; it gets ``request_timeout`` to notice (at its
        next chunk) before it is killed."""
        if self._hung_up:
            return
        self._hung_up = True
        self._worker.send(("stop", self._seq))
        if self._deadline is not None:
            loop = asyncio.get_running_loop()
            self._deadline.reschedule(loop.time() + (self._request_timeout or 30.0))
