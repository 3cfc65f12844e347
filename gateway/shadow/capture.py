"""Calling an ASGI app a second time: keep the request body, replay it, record the response.

Shadow traffic and fallback both need to send one request to two apps. The body is read once
(only when it is small and its size is declared), replayed to each app, and each response is
recorded, up to a limit, with the digest of all of it::

    from gateway.request_body import declared_body_size, read_body

    body = await read_body(receive, declared_body_size(scope))   # None: the client left
    recorder = ResponseRecorder(limit=1 << 20)
    await service(scope, replay(body), recorder)
    captured = recorder.captured()                    # status, headers, body, sha256
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.shadow.compare import Captured

#: Methods shadowed without a route saying they are side-effect-free (RFC 9110 safe methods
#: that carry an answer worth comparing).
SAFE_METHODS = frozenset({"GET", "HEAD"})
#: Methods a fallback may send a second time (RFC 9110 section 9.2.2).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


def replay(body: bytes, then: Receive | None = None) -> Receive:
    """A ``receive`` that hands over ``body`` in one message, then defers to ``then`` (the
    client's own ``receive``, so disconnects still reach the app) or waits until cancelled."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if then is not None:
            return await then()
        # A copy has no client: nothing more ever arrives. The caller's timeout ends the wait.
        await asyncio.Event().wait()
        raise AssertionError("unreachable")  # pragma: no cover

    return receive


class ResponseRecorder:
    """A ``send`` that records a response (and forwards it, when given the client's ``send``)."""

    __slots__ = (
        "_chunks",
        "_digest",
        "_forward",
        "_kept",
        "_limit",
        "complete",
        "headers",
        "status",
    )

    def __init__(self, *, limit: int, forward: Send | None = None) -> None:
        self._limit = limit
        self._forward = forward
        self._chunks: list[bytes] = []
        self._kept = 0
        self._digest = hashlib.sha256()
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        #: The last body message arrived: the response is whole.
        self.complete = False

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
        elif kind == "http.response.body":
            chunk: bytes = message.get("body", b"")
            if chunk:
                self._digest.update(chunk)
                if self._kept <= self._limit:
                    self._chunks.append(chunk)
                    self._kept += len(chunk)
            if not message.get("more_body", False):
                self.complete = True
        if self._forward is not None:
            await self._forward(message)

    def captured(self) -> Captured:
        body = b"".join(self._chunks)
        truncated = len(body) > self._limit
        return Captured(
            status=self.status or 0,
            headers=tuple(
                (name.decode("latin-1").lower(), value.decode("latin-1"))
                for name, value in self.headers
            ),
            body=body[: self._limit] if truncated else body,
            digest=self._digest.hexdigest(),
            truncated=truncated,
        )


async def call_captured(
    app: ASGIApp, scope: Scope, body: bytes, *, seconds: float, limit: int
) -> tuple[Captured | None, str | None]:
    """Call ``app`` with ``body`` for at most ``seconds`` and capture its answer (at
    most ``limit`` body bytes kept): the answer, or ``None`` and why there is none."""
    recorder = ResponseRecorder(limit=limit)
    try:
        async with asyncio.timeout(seconds):
            await app(scope, replay(body), recorder)
    except TimeoutError:
        return None, f"timeout after {seconds:g}s"
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"[:200]
    if not recorder.complete:
        return None, "incomplete response"
    return recorder.captured(), None


def copy_scope(scope: Scope, **changes: Any) -> Scope:
    """A scope for a second call: its own dicts and header list, so neither call sees the
    other's changes (services set ``scope["state"]``, say)."""
    copied = dict(scope)
    copied["headers"] = list(scope["headers"])
    if "state" in scope:
        copied["state"] = dict(scope["state"])
    copied.update(changes)
    return copied
