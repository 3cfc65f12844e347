"""The composition root: ``create_app(settings)`` builds the whole gateway in the order it runs.

::

    settings = load_settings("gateway.toml", os.environ)
    app = create_app(settings)          # an ASGI app; serve it with uvicorn
    uvicorn.run(app, lifespan="on")

Order: logging (before the Flask app exists, so Flask adopts it) → legacy app → authentication
(backends, policies, the Flask session codec) → services → route table → inventory and route
checks → middleware (request context → request head → body limits → auth → dispatch) →
lifespan. Building does no network I/O and starts no service: service lifespans run when the
server sends the lifespan start-up event.
"""

from __future__ import annotations

import gc
import os
from typing import Any, TextIO

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.adapters.legacy import LegacyApp
from gateway.adapters.services import Service
from gateway.admin import AdminApp, GatewayState
from gateway.auth.build import build_auth
from gateway.dispatch import Dispatcher, breakers_of, build_route_plans
from gateway.errors import ConfigError, StartupError
from gateway.flags.build import create_runtime, create_storage
from gateway.flags.runtime import FlagRuntime
from gateway.inventory import Inventory, build_inventory
from gateway.loading import add_import_paths, load_app
from gateway.log import configure_logging, flush_logs
from gateway.middleware.auth import AuthMiddleware
from gateway.middleware.limits import LimitsMiddleware, build_body_limits
from gateway.middleware.request_context import RequestContextMiddleware
from gateway.middleware.request_head import RequestHeadMiddleware
from gateway.reports import ReportPublisher, ReportStore
from gateway.routes import DuplicateRouteError, Route, RouteTable
from gateway.settings import Settings
from gateway.shadow.results import ShadowResults
from gateway.shadow.runner import ShadowRunner

log = structlog.get_logger("gateway")


class GatewayApp:
    """The ASGI application a server runs: request handling plus the composed lifespan."""

    def __init__(
        self,
        *,
        settings: Settings,
        handler: ASGIApp,
        legacy: LegacyApp,
        services: dict[str, Service],
        table: RouteTable[Route],
        inventory: Inventory,
        state: GatewayState,
        flags: FlagRuntime,
        shadow: ShadowRunner,
        reports: ReportPublisher,
    ) -> None:
        self.settings = settings
        self.legacy = legacy
        self.services = services
        self.table = table
        self.inventory = inventory
        self.state = state
        self.flags = flags
        self.shadow = shadow
        self.reports = reports
        self._handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self._handler(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        # Flags first: the snapshot must be there before the first request is dispatched.
        await self.flags.start()
        started: list[Service] = []
        try:
            for service in self.services.values():
                await service.startup()
                started.append(service)
        except StartupError as exc:
            log.error("gateway.startup_failed", error=str(exc))
            for service in reversed(started):
                await service.shutdown()
            await self.flags.stop()
            await self.reports.stop()
            self.legacy.close()
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            # As Starlette does: servers (uvicorn, TestClient) expect the app to raise after
            # reporting the failure; uvicorn then exits without a second traceback.
            raise
        # Everything built so far lives as long as the process: keep the cyclic collector from
        # scanning it again and again (long gen-2 pauses show up in p99 otherwise).
        gc.collect()
        gc.freeze()
        await self.reports.start()
        self.state.ready = True
        log.info(
            "gateway.started",
            pid=os.getpid(),
            routes=len(self.table),
            services=list(self.services),
            legacy_threads=self.legacy.threads,
        )
        await send({"type": "lifespan.startup.complete"})

        await receive()  # lifespan.shutdown
        self.state.shutting_down = True
        # Shadow copies are extra work nobody waits for: cancel them before the services stop.
        await self.shadow.close()
        await self.reports.stop()
        for service in reversed(started):
            await service.shutdown()
        await self.flags.stop()
        self.legacy.close()
        log.info("gateway.stopped")
        # uvicorn ends by re-raising SIGTERM, which skips atexit: flush what is buffered now.
        flush_logs()
        await send({"type": "lifespan.shutdown.complete"})


def create_app(settings: Settings, *, log_stream: TextIO | None = None) -> GatewayApp:
    """Build the gateway; raise ``ConfigError`` or ``StartupError`` with a clear message."""
    configure_logging(
        format=settings.logging.format, level=settings.logging.level, stream=log_stream
    )
    source = settings.source
    add_import_paths(source)

    wsgi_app = load_app(settings.legacy.app, settings.legacy.options, source, "legacy")
    if not callable(wsgi_app):
        raise ConfigError.at(source, "legacy.app", f"{settings.legacy.app!r} is not a WSGI app")
    legacy = LegacyApp(
        wsgi_app,
        threads=settings.legacy.threads,
        buffer_body_limit=settings.legacy.buffer_body_limit,
        queue_timeout=settings.legacy.queue_timeout,
        request_timeout=settings.legacy.request_timeout,
    )

    auth = build_auth(settings, wsgi_app)

    services: dict[str, Service] = {}
    for name, service_settings in settings.services.items():
        key = f"services.{name}"
        app: Any = load_app(service_settings.app, service_settings.options, source, key)
        if not callable(app):
            raise ConfigError.at(
                source, f"{key}.app", f"{service_settings.app!r} is not an ASGI app"
            )
        services[name] = Service(name, app, bridge=auth.codec)

    table = build_route_table(settings)
    inventory = build_inventory(wsgi_app, {n: s.app for n, s in services.items()}, table)
    problems = inventory.route_problems(settings)
    if problems:
        raise ConfigError(problems)

    state = GatewayState()
    # One storage backend for the flags and this worker's report: one Redis client per worker.
    storage = create_storage(settings.flags)
    flags = create_runtime(settings.flags, source=source, storage=storage)
    plans = build_route_plans(settings, services, legacy)
    breakers = breakers_of(plans)
    results = ShadowResults(keep=settings.shadow.recent_mismatches)
    shadow = ShadowRunner(
        results=results,
        max_concurrent=settings.shadow.max_concurrent,
        max_compare_body=settings.shadow.max_compare_body,
    )
    reports = ReportPublisher(
        ReportStore(storage),
        build=lambda: {
            "shadow": results.snapshot(),
            "breakers": {breaker.route: breaker.view() for breaker in breakers},
        },
        version=lambda: results.version + sum(breaker.changes for breaker in breakers),
    )
    dispatcher = Dispatcher(
        table=table,
        legacy_rules=RouteTable(inventory.legacy_routes),
        legacy=legacy,
        gateway_app=AdminApp(
            state=state,
            inventory=inventory,
            flags=flags,
            reports=reports,
            admin_roles=settings.server.admin_roles,
        ),
        flags=flags,
        plans=plans,
        shadow=shadow,
        override_header=settings.flags.override_header,
    )
    authenticated = AuthMiddleware(
        dispatcher,
        backends=auth.backends,
        policies=auth.policies,
        strip_headers=settings.auth.strip_headers,
    )
    limited = LimitsMiddleware(
        authenticated,
        max_body_size=settings.limits.max_body_size,
        body_timeout=settings.limits.body_timeout,
        routes=build_body_limits(settings.limits, settings.source),
    )
    checked = RequestHeadMiddleware(
        limited,
        allowed_hosts=settings.server.allowed_hosts,
        trusted_proxies=settings.server.trusted_proxies,
    )
    handler = RequestContextMiddleware(
        checked,
        request_id_header=settings.server.request_id_header,
        backend_header=settings.server.backend_header,
        access_log=settings.logging.access_log,
    )
    return GatewayApp(
        settings=settings,
        handler=handler,
        legacy=legacy,
        services=services,
        table=table,
        inventory=inventory,
        state=state,
        flags=flags,
        shadow=shadow,
        reports=reports,
    )


def build_route_table(settings: Settings) -> RouteTable[Route]:
    routes = [
        Route(route.path, frozenset(route.methods), route.backend, route.flag, index)
        for index, route in enumerate(settings.routes)
    ]
    try:
        return RouteTable(routes)
    except DuplicateRouteError as exc:
        raise ConfigError.at(settings.source, "routes", str(exc)) from None
