"""Framed messages between the gateway and its legacy worker processes.

A frame is a 4-byte big-endian length and a pickle. Pickle because both ends are this code in
the same interpreter version, started by the gateway over a socket pair nobody else holds (it
is never a network protocol: unpickling runs code, so a frame must never come from anywhere
else). The worker's side is blocking (``FrameSocket``); the gateway's reads with asyncio
streams and never blocks its event loop::

    connection = FrameSocket(worker_socket)
    connection.send([(READY, 1234)])
    frame = connection.receive()              # None: the other end closed
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from typing import Any

#: Worker -> gateway messages beyond a response's START, BODY and END
#: (``gateway.adapters.wsgi_response``): the next request body chunk, please; the app raised
#: (with its traceback); the request stopped because the client went away; loaded and ready.
MORE, ERROR, STOPPED, READY = 3, 4, 5, 6

_LENGTH = struct.Struct(">I")


def encode(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(data)) + data


class FrameSocket:
    """A blocking socket that sends and receives frames (the worker's end)."""

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock
        self._buffer = bytearray()

    def send(self, message: Any) -> None:
        self._socket.sendall(encode(message))

    def receive(self, *, wait: bool = True) -> Any:
        """The next frame; ``None`` at the end of the stream, or (``wait=False``) when no
        whole frame has arrived yet."""
        while True:
            buffer = self._buffer
            if len(buffer) >= 4:
                (size,) = _LENGTH.unpack_from(buffer)
                if len(buffer) >= 4 + size:
                    message = pickle.loads(buffer[4 : 4 + size])  # noqa: S301 (see above)
                    del buffer[: 4 + size]
                    return message
            try:
                data = self._socket.recv(1 << 16, 0 if wait else socket.MSG_DONTWAIT)
            except BlockingIOError:
                return None
            if not data:
                return None
            buffer += data


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next frame; raises ``asyncio.IncompleteReadError`` when the stream ends."""
    (size,) = _LENGTH.unpack(await reader.readexactly(4))
    # Only ever the gateway's own worker, over a socket pair nobody else holds (see above).
    return pickle.loads(await reader.readexactly(size))  # noqa: S301
