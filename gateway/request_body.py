"""Request bodies as the headers declare them, and reading a small one whole.

The legacy adapter, the limits middleware, fallback and shadow traffic all need to know whether
a request has a body and how large it says it is; they ask here::

    size = declared_body_size(scope)   # 0: no body; None: chunked (or unreadable): unknown
    body = await read_body(receive, size)   # None: the client went away first
"""

from __future__ import annotations

from starlette.types import Receive, Scope


def declared_body_size(scope: Scope) -> int | None:
    """The body size a request declares: 0 without a body, ``None`` when unknown (chunked)."""
    size = 0
    for name, value in scope["headers"]:
        if name == b"content-length":
            # The server has checked the framing; a value it let through is digits.
            if not value.isdigit():
                return None
            size = int(value)
        elif name == b"transfer-encoding":
            return None
    return size


async def read_body(receive: Receive, declared: int) -> bytes | None:
    """Read a declared-size body whole; ``None`` when the client went away first."""
    if declared == 0:
        return b""
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)
