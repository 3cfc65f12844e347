"""The gateway's own endpoints, under ``/_gateway/``.

- ``GET /_gateway/health``: the process is alive (200 while it can answer at all).
- ``GET /_gateway/ready``: every service lifespan has started (503 before and during shut-down),
  for load balancers and orchestrators.
- ``GET /_gateway/routes``: the route inventory as JSON.
- ``GET /_gateway/openapi.json``: these endpoints as OpenAPI 3.0 (``gateway.admin_openapi``).
- ``/_gateway/api/...``: the admin API (an identity with one of ``server.admin_roles``, checked
  here whatever the access policies say):

  - ``GET  /_gateway/api/flags``: every flag's effective state, the kill switch, the store;
  - ``GET  /_gateway/api/flags/{name}``: one flag;
  - ``PUT  /_gateway/api/flags/{name}``: change a flag (JSON: any of ``mode``, ``percentage``,
    ``allow_subjects``, ``deny_subjects``, ``allow_roles``, ``deny_roles``);
  - ``GET|PUT /_gateway/api/kill-switch``: ``{"enabled": true}`` sends every flagged route to
    legacy at once; ``false`` lifts it;
  - ``GET  /_gateway/api/shadow``: shadow results of every live worker, added up: per route the
    counts, the noise learned, and the recent mismatches with their (redacted) differences;
  - ``GET  /_gateway/api/breakers``: each guarded route's circuit breaker, per worker.

Every change goes through the flag store (so every process and host follows) and is written as
an audit line (``flags.changed``: who, which flag, old, new).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from gateway.admin_openapi import ADMIN_OPENAPI
from gateway.auth.policy import authorize, requiring
from gateway.context import RequestFacts, request_facts
from gateway.errors import send_error, send_json
from gateway.flags.model import FlagSpec, FlagState
from gateway.flags.runtime import FlagRuntime
from gateway.flags.stores import StoreUnavailable
from gateway.inventory import Inventory
from gateway.reports import Report, ReportPublisher, combine_reports

_API = "/_gateway/api/"
_FLAGS = "/_gateway/api/flags"
_MAX_BODY = 64 * 1024


@dataclass(slots=True)
class GatewayState:
    """What the lifespan knows and the admin endpoints report."""

    ready: bool = False
    shutting_down: bool = False


class _Problem(Exception):
    def __init__(self, status: int, message: str, headers: Sequence[tuple[bytes, bytes]] = ()):
        self.status = status
        self.message = message
        self.headers = list(headers)


class AdminApp:
    def __init__(
        self,
        *,
        state: GatewayState,
        inventory: Inventory,
        flags: FlagRuntime,
        reports: ReportPublisher | None = None,
        admin_roles: Sequence[str] = ("admin",),
    ) -> None:
        self._state = state
        self._reports = reports
        self._inventory = inventory
        self._flags = flags
        self._admin_policy = requiring(admin_roles)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        facts = request_facts(scope)
        try:
            status, payload = await self._dispatch(facts, receive)
        except _Problem as problem:
            await send_error(
                send, problem.status, problem.message, facts.request_id, problem.headers
            )
            return
        body = json.dumps(payload, separators=(",", ":")).encode()
        await send_json(
            send,
            status,
            body,
            [(b"cache-control", b"no-store")],
            include_body=facts.method != "HEAD",
        )

    async def _dispatch(self, facts: RequestFacts, receive: Receive) -> tuple[int, Any]:
        path, method = facts.path, facts.method
        read_only = method in ("GET", "HEAD")
        if path == "/_gateway/health":
            self._only(read_only, "GET, HEAD", facts, path)
            return 200, {"status": "ok"}
        if path == "/_gateway/ready":
            self._only(read_only, "GET, HEAD", facts, path)
            return self._ready()
        if path == "/_gateway/routes":
            self._only(read_only, "GET, HEAD", facts, path)
            return 200, {"routes": [row.as_dict() for row in self._inventory.rows]}
        if path == "/_gateway/openapi.json":
            self._only(read_only, "GET, HEAD", facts, path)
            return 200, ADMIN_OPENAPI
        if not path.startswith(_API):
            raise _Problem(404, "no such gateway endpoint")
        self._require_admin(facts)
        if path == _FLAGS:
            self._only(read_only, "GET, HEAD", facts, path)
            return 200, self._flags.view()
        if path.startswith(_FLAGS + "/"):
            name = path[len(_FLAGS) + 1 :]
            facts.route = _FLAGS + "/{name}"
            if read_only:
                return 200, {"name": name, **self._flag_view(name)}
            self._only(method == "PUT", "GET, HEAD, PUT", facts, facts.route)
            return await self._set_flag(facts, name, await _read_json(receive))
        if path in ("/_gateway/api/shadow", "/_gateway/api/breakers"):
            self._only(read_only, "GET, HEAD", facts, path)
            combined = combine_reports(await self._read_reports())
            if path.endswith("/shadow"):
                return 200, {"workers": combined["workers"], **combined["shadow"]}
            return 200, {"workers": combined["workers"], "breakers": combined["breakers"]}
        if path == "/_gateway/api/kill-switch":
            if read_only:
                facts.route = path
                return 200, {"enabled": self._flags.view()["kill_switch"]}
            self._only(method == "PUT", "GET, HEAD, PUT", facts, path)
            return await self._set_kill_switch(facts, await _read_json(receive))
        raise _Problem(404, "no such gateway endpoint")

    async def _read_reports(self) -> list[Report]:
        return await self._reports.read_all() if self._reports is not None else []

    def _only(self, allowed: bool, allow: str, facts: RequestFacts, route: str) -> None:
        facts.route = route
        if not allowed:
            raise _Problem(405, "method not allowed", [(b"allow", allow.encode())])

    def _require_admin(self, facts: RequestFacts) -> None:
        decision = authorize(self._admin_policy, facts.identity)
        if decision.status == 401:
            challenge = [(b"www-authenticate", b'Bearer realm="gateway"')]
            raise _Problem(401, decision.reason, challenge)
        if decision.status == 403:
            raise _Problem(403, decision.reason)

    def _ready(self) -> tuple[int, Any]:
        if self._state.ready and not self._state.shutting_down:
            return 200, {"status": "ready"}
        return 503, {"status": "shutting down" if self._state.shutting_down else "starting"}

    def _flag_view(self, name: str) -> dict[str, Any]:
        flags: dict[str, Any] = self._flags.view()["flags"]
        if name not in flags:
            raise _Problem(404, f"unknown flag {name!r} (known: {', '.join(flags) or 'none'})")
        view: dict[str, Any] = flags[name]
        return view

    async def _set_flag(self, facts: RequestFacts, name: str, body: Any) -> tuple[int, Any]:
        current = self._flag_view(name)
        if not isinstance(body, dict):
            raise _Problem(400, "the body must be a JSON object of flag fields")
        unknown = sorted(set(body) - set(FlagSpec.model_fields))
        if unknown:
            raise _Problem(400, f"unknown flag fields: {', '.join(unknown)}")
        merged = {key: value for key, value in current.items() if key != "source"}
        merged.update(body)
        try:
            spec = FlagSpec.model_validate(merged)
        except ValidationError as exc:
            raise _Problem(400, _first_error(exc)) from None

        def change(state: FlagState) -> FlagState:
            return state.model_copy(update={"flags": {**state.flags, name: spec}})

        await self._update(change, facts)
        return 200, {"name": name, **self._flag_view(name)}

    async def _set_kill_switch(self, facts: RequestFacts, body: Any) -> tuple[int, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
            raise _Problem(400, 'the body must be {"enabled": true} or {"enabled": false}')
        enabled = body["enabled"]
        await self._update(lambda state: state.model_copy(update={"kill_switch": enabled}), facts)
        return 200, {"enabled": enabled}

    async def _update(self, change: Callable[[FlagState], FlagState], facts: RequestFacts) -> None:
        actor = f"{facts.identity.subject} ({facts.identity.method})"
        try:
            await self._flags.update(change, actor=actor)
        except StoreUnavailable as exc:
            raise _Problem(503, f"the flag store is unavailable: {exc}") from None


async def _read_json(receive: Receive) -> Any:
    body = b""
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Problem(400, "the client went away")
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > _MAX_BODY:
            raise _Problem(413, f"the body is larger than {_MAX_BODY} bytes")
    try:
        return json.loads(body)
    except ValueError:
        raise _Problem(400, "the body is not valid JSON") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"])
    return f"{location}: {error['msg']}" if location else error["msg"]
