"""The dashboard's endpoints, in front of the admin API under ``/_gateway/``.

``DashboardApp`` is what the dispatcher calls for every path under ``/_gateway/``. It refuses a
cookie-authenticated change that a cross-site page could have forged (``gateway.csrf``; for the
admin API's endpoints too, which the page's controls call: flags, kill switch, rollouts), serves
its own paths to admins only, and hands everything else to the admin API unchanged:

- ``GET /_gateway/``: the page; ``GET /_gateway/static/{dashboard.js,dashboard.css}``;
- ``GET /_gateway/api/dashboard``: everything the page shows, as JSON (polled every 2 s);
- ``GET /_gateway/api/status``: migration progress only, what ``gateway status`` prints.

::

    dashboard = Dashboard(registry=registry, inventory=lambda: app.inventory, flags=flags, ...)
    app = DashboardApp(admin, dashboard=dashboard, admin_roles=["admin"])
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.auth.policy import authorize, requiring
from gateway.context import RequestFacts, request_facts
from gateway.csrf import csrf_problem
from gateway.dashboard.overview import (
    SERIES_SPAN,
    migration_status,
    resilience_view,
    rollout_view,
    route_table,
    shadow_view,
)
from gateway.dashboard.page import PAGE, SECURITY_HEADERS
from gateway.dashboard.sampler import Sampler
from gateway.dashboard.traffic import Collectable, History, Reading, read_registry
from gateway.errors import send_error
from gateway.flags.runtime import FlagRuntime
from gateway.inventory import Inventory
from gateway.reports import ReportPublisher, combine_reports
from gateway.settings import RouteSettings

PAGE_PATH = "/_gateway/"
STATIC_PREFIX = "/_gateway/static/"
_CHALLENGE = [(b"www-authenticate", b'Bearer realm="gateway"')]
_NO_STORE = [(b"cache-control", b"no-store")]


class Dashboard:
    """The dashboard's data: the metrics registry and its history, the route inventory, the
    flags and the workers' reports."""

    def __init__(
        self,
        *,
        registry: Collectable,
        inventory: Callable[[], Inventory],
        flags: FlagRuntime,
        reports: ReportPublisher | None,
        interval: float = 5.0,
        recent_mismatches: int = 100,
        routes: Callable[[], Sequence[RouteSettings]] = tuple,
    ) -> None:
        self.registry = registry
        self.history = History()
        self.sampler = Sampler(registry, self.history, interval=interval)
        #: The route inventory served now (a config reload replaces it).
        self._inventory = inventory
        #: The ``[[routes]]`` served now: which ones a rollout can be started for.
        self._routes = routes
        self._flags = flags
        self._reports = reports
        self._keep = recent_mismatches

    async def _reading(self) -> Reading:
        # A multiprocess registry reads every worker's files: not on the event loop.
        return await anyio.to_thread.run_sync(read_registry, self.registry)

    async def status(self) -> dict[str, Any]:
        now = await self._reading()
        return migration_status(self._inventory().rows, self._flags.view(), self.history, now)

    async def overview(self, facts: RequestFacts) -> dict[str, Any]:
        now = await self._reading()
        flags = self._flags.view()
        rows = self._inventory().rows
        reports = await self._reports.read_all() if self._reports is not None else []
        combined = combine_reports(reports, keep=self._keep)
        return {
            "generated": time.time(),
            "user": facts.identity.subject,
            "workers": combined["workers"],
            "flags": flags,
            "status": migration_status(rows, flags, self.history, now),
            "routes": route_table(rows, flags, self.history, now),
            "shadow": shadow_view(now, combined["shadow"]),
            "resilience": resilience_view(now, combined["breakers"]),
            "rollouts": rollout_view(self._routes(), self._flags.state.rollouts, time.time()),
            "series": self.history.series(SERIES_SPAN),
        }


class DashboardApp:
    def __init__(
        self, admin: ASGIApp, *, dashboard: Dashboard, admin_roles: Sequence[str] = ("admin",)
    ) -> None:
        self._admin = admin
        self._dashboard = dashboard
        self._policy = requiring(admin_roles)
        self._static = StaticFiles(packages=[("gateway.dashboard", "static")])
        self._api: dict[str, Callable[[RequestFacts], Awaitable[dict[str, Any]]]] = {
            "/_gateway/api/dashboard": dashboard.overview,
            "/_gateway/api/status": lambda facts: dashboard.status(),
        }

    def serves(self, path: str) -> bool:
        return path == PAGE_PATH or path.startswith(STATIC_PREFIX) or path in self._api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._admin(scope, receive, send)
            return
        facts = request_facts(scope)
        problem = csrf_problem(scope, facts.identity)
        if problem is not None:
            await send_error(send, 403, problem, facts.request_id, _NO_STORE)
            return
        if not self.serves(facts.path):
            await self._admin(scope, receive, send)
            return
        decision = authorize(self._policy, facts.identity)
        if decision.status != 200:
            facts.denied = decision.reason
            headers = [*_NO_STORE, *(_CHALLENGE if decision.status == 401 else [])]
            await send_error(send, decision.status, decision.reason, facts.request_id, headers)
            return
        if facts.method not in ("GET", "HEAD"):
            allow = [(b"allow", b"GET, HEAD"), *_NO_STORE]
            await send_error(send, 405, "method not allowed", facts.request_id, allow)
            return
        facts.route = facts.path if not facts.path.startswith(STATIC_PREFIX) else STATIC_PREFIX
        await self._serve(facts, scope, receive, _secured(send))

    async def _serve(self, facts: RequestFacts, scope: Scope, receive: Receive, send: Send) -> None:
        if facts.path == PAGE_PATH:
            await HTMLResponse(PAGE)(scope, receive, send)
        elif facts.path.startswith(STATIC_PREFIX):
            name = facts.path[len(STATIC_PREFIX) :]
            try:
                await self._static({**scope, "path": "/" + name, "root_path": ""}, receive, send)
            except HTTPException as exc:  # StaticFiles leaves its 404 to an app's handler
                await send_error(send, exc.status_code, "no such file", facts.request_id)
        else:
            answer = await self._api[facts.path](facts)
            await JSONResponse(answer)(scope, receive, send)


_SECURITY = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]


def _secured(send: Send) -> Send:
    """``send``, adding the security headers to the response."""

    async def send_secured(message: Any) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *_SECURITY]}
        await send(message)

    return send_secured
