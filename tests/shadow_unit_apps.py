"""Five-line ASGI apps and a scope with request facts, for in-process guard and shadow tests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from support import http_scope

from gateway.context import FACTS_KEY, RequestFacts, request_facts


def gateway_scope(
    path: str = "/thing/1",
    method: str = "GET",
    *,
    body_size: int | None = None,
    headers: Iterable[tuple[bytes, bytes]] = (),
    query: bytes = b"",
    request_id: str = "req-1",
) -> dict[str, Any]:
    """An HTTP scope as the request-context middleware leaves it: with its facts.

    ``body_size`` adds a ``content-length`` header (none: no body, or a chunked one when
    ``headers`` says ``transfer-encoding``).
    """
    all_headers = list(headers)
    if body_size is not None:
        all_headers.append((b"content-length", str(body_size).encode()))
    scope = http_scope(path, method, all_headers)
    scope["query_string"] = query
    scope[FACTS_KEY] = RequestFacts(request_id=request_id, path=path, method=method)
    return scope


async def read_all(receive: Any) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def answer(send: Any, status: int, body: bytes, content_type: bytes = b"text/plain") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type)],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def answer_json(send: Any, payload: Any, status: int = 200) -> None:
    await answer(send, status, json.dumps(payload).encode(), b"application/json")


@dataclass
class Seen:
    """One call an app received: what a test wants to know it was given."""

    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    facts: RequestFacts


@dataclass
class EchoApp:
    """Reads the whole body, records the call, answers ``<name>:<body>`` with 200."""

    name: str
    calls: list[Seen] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = await read_all(receive)
        self.calls.append(
            Seen(
                scope["method"],
                scope["path"],
                scope["query_string"],
                list(scope["headers"]),
                body,
                request_facts(scope),
            )
        )
        await answer(send, 200, self.name.encode() + b":" + body)


async def hang_forever(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await asyncio.sleep(60)
