"""HEAD answered by the GET handler, as Flask and Starlette's ``Route`` answer it.

FastAPI's routes answer HEAD with 405 unless a route declares HEAD. Where the gateway sends a
HEAD to a FastAPI app (a migrated route, its own endpoints), it runs the GET handler and drops
the body, so a path keeps answering HEAD as it did on legacy::

    scope, send = as_get(scope, send)     # for a HEAD request; the scope is a copy
"""

from __future__ import annotations

from starlette.types import Message, Scope, Send


def as_get(scope: Scope, send: Send) -> tuple[Scope, Send]:
    """A GET scope, and a ``send`` that passes the response on without its body bytes."""

    async def send_head(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            message = {**message, "body": b""}
        await send(message)

    return {**scope, "method": "GET"}, send_head
