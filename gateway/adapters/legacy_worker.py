"""One legacy worker process: it loads the WSGI app and serves the requests its gateway sends.

The gateway (``gateway.adapters.legacy_processes``) starts it with one end of a socket pair and
talks to it in frames (``gateway.adapters.frames``); it runs one request at a time, on its
main thread::

    gateway -> worker   (settings, sys.path)                  once; the worker answers READY
                        ("request", seq, environ, facts, body) body None: pulled with MORE
                        ("body", seq, data, more_body)         the answer to a MORE
                        ("body-error", seq, reason)            the client's body broke
                        ("stop", seq)                          the client is gone
    worker -> gateway   [(START, status, headers), (BODY, chunk), (END,)]   (START etc. as
                        in gateway.adapters.wsgi_response), or [(MORE,)], [(ERROR, text)],
                        [(STOPPED,)]; a request ends with END, ERROR or STOPPED

A body with a ``Content-Length`` that is complete goes out with the end of the response, in one
frame, so a small response crosses once. A streamed one goes chunk by chunk; the worker blocks
while the socket is full (back-pressure) and, before each chunk after the first, looks for a
``stop`` without waiting for one: then the iteration raises ``ClientDisconnected`` and the app's
``close()`` runs, as on a thread.

The worker ignores SIGINT and SIGTERM: the gateway stops it by closing the connection (it exits
once its request is done) or kills it (a request that timed out). It exits on its own when the
gateway's process ends, as the connection closes.
"""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import socket
import sys
import traceback
from typing import Any

import structlog
from werkzeug.exceptions import ClientDisconnected as WerkzeugClientDisconnected

from gateway.adapters.frames import ERROR, MORE, READY, STOPPED, FrameSocket
from gateway.adapters.legacy import StreamedBody
from gateway.adapters.wsgi_response import (
    BODY,
    ClientDisconnected,
    ResponseWriter,
    WSGIApp,
    run_wsgi,
)
from gateway.context import ENVIRON_SCOPE_KEY, FACTS_KEY, RequestFacts
from gateway.log import configure_logging, flush_logs

log = structlog.get_logger("gateway.legacy")


class _SocketWriter(ResponseWriter):
    """Hands a response to the gateway over the socket."""

    def __init__(self, connection: FrameSocket, seq: int) -> None:
        super().__init__()
        self._connection = connection
        self._seq = seq
        self._held: list[tuple[Any, ...]] = []
        #: The gateway has heard how this request ended (END, ERROR or STOPPED).
        self.ended = False

    def _post(self, messages: list[tuple[Any, ...]], size: int, done: bool = False) -> None:
        if self._held:
            messages = self._held + messages
            self._held = []
        if not done:
            if self._remaining == 0:
                # The whole declared body is here: it goes with the end, in one frame.
                self._held = messages
                return
            if messages[0][0] == BODY and _stopped(self._connection, self._seq):
                # A chunk after the first (the first carries the start): a streamed response,
                # and the client may have left since the last one.
                raise ClientDisconnected
        self._connection.send(messages)
        self.ended = done

    def fail(self, exc: BaseException) -> None:
        if self.ended:
            log.error("legacy.close_failed", exc_info=exc)
            return
        text = "".join(traceback.format_exception(exc)).rstrip()
        self._connection.send([(ERROR, text)])
        self.ended = True


def _stopped(connection: FrameSocket, seq: int) -> bool:
    """Whether the gateway has said, for this request, that the client is gone."""
    while (frame := connection.receive(wait=False)) is not None:
        if frame[0] == "stop" and frame[1] == seq:
            return True
    return False


class _PulledBody(StreamedBody):
    """``wsgi.input`` for a streamed request body: each read past the buffer asks the gateway
    for the next chunk the client sent."""

    def __init__(self, connection: FrameSocket, seq: int) -> None:
        self.buffer = bytearray()
        self._has_more = True
        self._connection = connection
        self._seq = seq

    def _receive_more_data(self) -> bytes:
        if not self._has_more:
            return b""
        self._connection.send([(MORE,)])
        while True:
            frame = self._connection.receive()
            if frame is None:
                raise WerkzeugClientDisconnected("the gateway closed the connection")
            if frame[1] != self._seq:
                continue  # left over from an earlier request
            if frame[0] == "body":
                self._has_more = frame[3]
                data: bytes = frame[2]
                return data
            if frame[0] == "body-error":
                raise WerkzeugClientDisconnected(frame[2])
            # "stop": the client is gone.
            raise WerkzeugClientDisconnected("the client disconnected")


def serve(connection: FrameSocket, app: WSGIApp) -> None:
    """Serve requests until the gateway closes the connection."""
    while (frame := connection.receive()) is not None:
        if frame[0] != "request":
            continue  # a stop or body chunk for a request that has already ended
        _, seq, environ, facts, body = frame
        scope: dict[str, Any] = {"type": "http"}
        if facts is not None:
            scope[FACTS_KEY] = facts
            structlog.contextvars.bind_contextvars(request_id=facts.request_id)
        environ[ENVIRON_SCOPE_KEY] = scope
        environ["wsgi.input"] = _PulledBody(connection, seq) if body is None else io.BytesIO(body)
        environ["wsgi.errors"] = sys.stderr
        writer = _SocketWriter(connection, seq)
        run_wsgi(app, environ, writer)
        if not writer.ended:
            connection.send([(STOPPED,)])
        structlog.contextvars.clear_contextvars()


def facts_for_worker(facts: RequestFacts | None) -> RequestFacts | None:
    """The facts a worker gets: all but the tracing hooks, which live in the gateway."""
    return None if facts is None else dataclasses.replace(facts, spans=None)


def _lower_priority(scheduling: str, nice: int) -> None:
    """Below the gateway's priority: when views and the event loop want the same cores, the
    loop (every new route) runs first (``[legacy] scheduling`` and ``nice``)."""
    if scheduling == "idle":
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    elif nice:
        os.nice(nice)


def main(fd: int) -> None:
    """The worker's entry point (the gateway runs it with ``python -c``)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    connection = FrameSocket(socket.socket(fileno=fd))
    init = connection.receive()
    if init is None:
        return
    settings = init[0]
    configure_logging(format=settings.logging.format, level=settings.logging.level)
    # Imported here: the build module pulls in the whole gateway, which the parent already has.
    from gateway.build import load_legacy_app

    try:
        _lower_priority(settings.legacy.scheduling, settings.legacy.nice)
        app = load_legacy_app(settings)[0]
    except Exception:
        log.exception("legacy.worker_start_failed", pid=os.getpid())
        flush_logs()
        raise SystemExit(1) from None
    try:
        connection.send([(READY, os.getpid())])
        serve(connection, app)
    except ConnectionError:
        pass  # the gateway went away (it stopped while this worker was starting, or died)
    finally:
        flush_logs()
