"""The gateway's own endpoints, under ``/_gateway/``.

- ``GET /_gateway/health``: the process is alive (200 while it can answer at all).
- ``GET /_gateway/ready``: every service lifespan has started (503 before and during shut-down),
  for load balancers and orchestrators.
- ``GET /_gateway/routes``: the route inventory as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive, Scope, Send

from gateway.context import request_facts
from gateway.errors import send_error
from gateway.inventory import Inventory


@dataclass(slots=True)
class GatewayState:
    """What the lifespan knows and the admin endpoints report."""

    ready: bool = False
    shutting_down: bool = False


class AdminApp:
    def __init__(self, *, state: GatewayState, inventory: Inventory) -> None:
        self._state = state
        self._inventory = inventory
        self._handlers: dict[str, Callable[[], Awaitable[tuple[int, Any]]]] = {
            "/_gateway/health": self._health,
            "/_gateway/ready": self._ready,
            "/_gateway/routes": self._routes,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        facts = request_facts(scope)
        handler = self._handlers.get(facts.path)
        if handler is None:
            await send_error(send, 404, "no such gateway endpoint", facts.request_id)
            return
        facts.route = facts.path
        if facts.method not in ("GET", "HEAD"):
            await send_error(
                send, 405, "method not allowed", facts.request_id, [(b"allow", b"GET, HEAD")]
            )
            return
        status, payload = await handler()
        body = json.dumps(payload, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if facts.method == "HEAD" else body})

    async def _health(self) -> tuple[int, Any]:
        return 200, {"status": "ok"}

    async def _ready(self) -> tuple[int, Any]:
        if self._state.ready and not self._state.shutting_down:
            return 200, {"status": "ready"}
        reason = "shutting down" if self._state.shutting_down else "starting"
        return 503, {"status": reason}

    async def _routes(self) -> tuple[int, Any]:
        return 200, {"routes": [row.as_dict() for row in self._inventory.rows]}
