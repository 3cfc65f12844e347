"""One ``write()`` for a response's head and its first body bytes.

uvicorn's httptools protocol writes the status line and headers to the socket as soon as the app
sends ``http.response.start``, and the body when ``http.response.body`` follows: two system calls
and two TCP segments for every small response, when one would do. The write is a real share of a
small response's cost (the kernel's TCP work is charged to the server), so the gateway's protocol
(``gateway.http_protocol``) gives each request's cycle this transport, which holds the head and
sends it with the first body bytes::

    cycle.transport = HeadWithFirstBody(transport, loop)

The head is held only until the event loop's next turn: a streamed response whose first chunk is
not ready by then (server-sent events, a slow generator) has its head written on its own, as
before, so a client never waits longer for the headers than the loop takes to turn. A
``100 Continue`` (written before the response starts) and everything after the head pass straight
through; so does a first chunk larger than ``_JOIN_LIMIT`` (joining would copy it), which is
written right after the head.

It relies on what uvicorn's cycle does with its transport: ``write``, ``close`` and
``is_closing``, and no write before the head but a ``100 Continue``. uvicorn is pinned below the
next minor version, and ``tests/test_http_coalesce.py`` drives a real server over raw sockets
through every path. (The transport keeps no reference to its cycle: the cycle refers to it, and a
reference back would make every request's cycle garbage that only the collector can free.)
"""

from __future__ import annotations

import asyncio

#: A first body chunk up to this size is joined to the head; a larger one is written after it.
_JOIN_LIMIT = 64 * 1024

_BEFORE_HEAD, _HELD, _WRITTEN = 0, 1, 2
#: The only thing uvicorn's cycle writes before a response's head (``receive()``, answering
#: ``Expect: 100-continue``).
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class HeadWithFirstBody:
    """A response cycle's transport: ``write``, ``close`` and ``is_closing``, as the cycle uses
    them, over the connection's real transport."""

    __slots__ = ("_head", "_loop", "_state", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._state = _BEFORE_HEAD
        self._head = b""

    def write(self, data: bytes) -> None:
        state = self._state
        if state == _HELD:
            self._state = _WRITTEN
            head, self._head = self._head, b""
            if len(data) <= _JOIN_LIMIT:
                self._transport.write(head + data)
            else:
                self._transport.write(head)
                self._transport.write(data)
        elif state == _BEFORE_HEAD and data != _CONTINUE:
            self._state = _HELD
            self._head = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Write a head still held (its body has not come within a turn of the loop)."""
        if self._state == _HELD:
            self._state = _WRITTEN
            head, self._head = self._head, b""
            if not self._transport.is_closing():
                self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()
