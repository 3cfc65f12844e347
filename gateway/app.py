"""The composition root: ``create_app(settings)`` builds the whole gateway in the order it runs.

::

    from gateway.settings import load_settings

    settings = load_settings("gateway.toml", os.environ)
    app = create_app(settings)          # an ASGI app; serve it with uvicorn
    uvicorn.run(app, lifespan="on")

Order: logging (before the Flask app exists, so Flask adopts it) → legacy app → authentication
(backends, policies, the Flask session codec) → services → flags → route plans and their table
→ inventory and route checks → the admin endpoints and the dispatcher → the middleware stack
(``gateway.build.build_middleware``, listed in the order a request passes through it) →
lifespan. The steps from the route plans to the middleware make the *request path*
(``build_request_path``), which a config reload builds again and swaps in
(``gateway.live_config``); the parts before it live as long as the process. Building does no
network I/O and starts no service: the components with a lifetime (the legacy pool, the flag
runtime, each service, the report publisher, the shadow runner) are async context managers,
entered in that order when the server sends the lifespan start-up event and left in reverse
at shut-down.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import TYPE_CHECKING, Any, TextIO

import structlog
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.adapters.legacy import LegacyApp
from gateway.adapters.services import Service
from gateway.admin import AdminApp, GatewayState
from gateway.build import (
    build_auth,
    build_flags,
    build_legacy,
    build_metrics,
    build_middleware,
    build_recording,
    build_route_plans,
    build_route_table,
    build_sample_writer,
    build_services,
    build_shadow_runner,
    build_storage,
    build_tracing,
    wrap,
)
from gateway.context import GATEWAY, LEGACY
from gateway.dashboard import Dashboard, DashboardApp
from gateway.dispatch import Dispatcher
from gateway.errors import ConfigError, GatewayError
from gateway.flags.runtime import FlagRuntime
from gateway.inventory import Inventory, build_inventory
from gateway.live_config import RequestPath, keep_unchanged_plans
from gateway.loading import add_import_paths
from gateway.log import configure_logging, flush_logs
from gateway.metrics import Metrics
from gateway.metrics.recorder import STATE_KEY
from gateway.openapi import app_docs
from gateway.recording.writer import SampleWriter
from gateway.reports import ReportPublisher, ReportStore
from gateway.resilience import Breaker, GuardedService
from gateway.rollout.api import rollout_router
from gateway.rollout.commands import RolloutCommands, rollout_settings
from gateway.rollout.controller import RolloutController
from gateway.rollout.outcomes import RolloutOutcomes, labels_by_flag
from gateway.route_plan import RoutePlan
from gateway.routes import RouteTable
from gateway.settings import Settings
from gateway.shadow.runner import ShadowRunner

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

log = structlog.get_logger("gateway")


class GatewayApp:
    """The ASGI application a server runs: request handling plus the composed lifespan."""

    def __init__(
        self,
        *,
        path: RequestPath,
        rebuild: Callable[[Settings, RequestPath | None], RequestPath],
        follow: Callable[[RequestPath], None],
        legacy: LegacyApp,
        services: dict[str, Service],
        state: GatewayState,
        flags: FlagRuntime,
        shadow: ShadowRunner,
        reports: ReportPublisher,
        tracing: AbstractAsyncContextManager[Any] | None = None,
        rollouts: RolloutController | None = None,
        recorder: SampleWriter | None = None,
        metrics: Metrics | None = None,
        dashboard: Dashboard | None = None,
    ) -> None:
        self.legacy = legacy
        self.services = services
        self.state = state
        self.flags = flags
        self.shadow = shadow
        self.reports = reports
        self.tracing = tracing
        self.rollouts = rollouts
        self.recorder = recorder
        self.metrics = metrics
        self.dashboard = dashboard
        #: Builds a request path from (reloaded) settings over this process's parts.
        self.rebuild = rebuild
        #: Started after everything else and stopped first (``gateway.reload_control``).
        self.extras: list[AbstractAsyncContextManager[Any]] = []
        self._follow = follow
        self.swap(path)

    def swap(self, path: RequestPath) -> None:
        """Serve every new request with ``path``: one reference, read once per request, so a
        request in flight finishes on the objects it started with."""
        self._follow(path)
        self.path = path
        self._handler = path.handler

    @property
    def settings(self) -> Settings:
        return self.path.settings

    @property
    def table(self) -> RouteTable[RoutePlan]:
        return self.path.table

    @property
    def inventory(self) -> Inventory:
        return self.path.inventory

    @property
    def components(self) -> Sequence[AbstractAsyncContextManager[Any]]:
        """What has a lifetime, in start-up order: shut-down runs it backwards. Flags come before
        the services (the snapshot must be there for the first request); the shadow runner is
        left first, so copies still running are cancelled before the services stop. Tracing
        (when on) starts first and stops last, so every span is exported; metrics (when on)
        flush for the last time after everything else has stopped."""
        first: list[AbstractAsyncContextManager[Any]] = [
            c for c in (self.tracing, self.metrics) if c is not None
        ]
        # The rollout controller decides from the reports: it stops before they do.
        rollouts = [] if self.rollouts is None else [self.rollouts]
        # The sample writer is left late too, so samples still queued get written.
        recorder = [] if self.recorder is None else [self.recorder]
        last = [] if self.dashboard is None else [self.dashboard.sampler]
        return [
            *first,
            *recorder,
            self.legacy,
            self.flags,
            *self.services.values(),
            self.reports,
            *rollouts,
            self.shadow,
            *last,
            *self.extras,
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        await self._handler(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        async with AsyncExitStack() as running:
            try:
                for component in self.components:
                    await running.enter_async_context(component)
            except Exception as exc:
                # Undo exactly what started, in reverse, before saying so.
                await running.aclose()
                message = str(exc) if isinstance(exc, GatewayError) else _describe(exc)
                log.error("gateway.startup_failed", error=message)
                await send({"type": "lifespan.startup.failed", "message": message})
                # As Starlette does: servers (uvicorn, TestClient) expect the app to raise after
                # reporting the failure; uvicorn then exits non-zero without a second traceback.
                raise
            # Everything built so far lives as long as the process: keep the cyclic collector
            # from scanning it again and again (long gen-2 pauses show up in p99 otherwise).
            gc.collect()
            gc.freeze()
            self.state.ready = True
            if self.metrics is not None and "state" in scope:
                # The server's connection protocol counts the requests it refuses itself
                # (gateway.http_protocol): uvicorn hands it this lifespan state.
                scope["state"][STATE_KEY] = self.metrics.recorder
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
        log.info("gateway.stopped")
        # uvicorn ends by re-raising SIGTERM, which skips atexit: flush what is buffered now.
        flush_logs()
        await send({"type": "lifespan.shutdown.complete"})


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def create_app(
    settings: Settings,
    *,
    log_stream: TextIO | None = None,
    tracer_provider: TracerProvider | None = None,
) -> GatewayApp:
    """Build the gateway; raise ``ConfigError`` or ``StartupError`` with a clear message.

    ``tracer_provider``: where spans go when tracing is on (default: the global provider).
    """
    configure_logging(
        format=settings.logging.format, level=settings.logging.level, stream=log_stream
    )
    add_import_paths(settings.source)

    wsgi_app, legacy = build_legacy(settings)
    auth = build_auth(settings, wsgi_app)
    services = build_services(settings, auth.codec, wsgi_app)
    # One storage backend for the flags and this worker's report: one Redis client per worker.
    storage = build_storage(settings)
    flags = build_flags(settings, storage)
    shadow = build_shadow_runner(settings)
    tracing = build_tracing(settings, tracer_provider)
    metrics = build_metrics(settings)

    def traced(app: ASGIApp, backend: str) -> ASGIApp:
        """With tracing on, every call to a backend is a span (``gateway.tracing``); with
        metrics on, it counts as in flight while it runs."""
        if metrics is not None:
            app = metrics.counted(app, backend)
        return app if tracing is None else tracing.traced(app, backend)

    legacy_app = traced(legacy, LEGACY)
    service_apps = {name: traced(app, name) for name, app in services.items()}
    # The breakers and each flag's routes of the request path served now: `follow` (called
    # by every swap, a config reload's included) replaces their content.
    breakers: list[Breaker] = []
    guards: list[GuardedService] = []
    flag_routes: dict[str, list[str]] = {}
    results = shadow.results
    outcomes = RolloutOutcomes(results, flag_routes)
    flags.listeners.append(outcomes.follow)
    reports = ReportPublisher(
        ReportStore(storage),
        build=lambda: {
            "shadow": results.snapshot(),
            "breakers": {breaker.label: breaker.view() for breaker in breakers},
            "rollouts": outcomes.snapshot(),
            "fallbacks": {guard.label: guard.fallbacks for guard in guards if guard.fallbacks},
        },
        version=lambda: (
            results.version
            + sum(breaker.changes for breaker in breakers)
            + outcomes.version
            + sum(guard.fallbacks for guard in guards)
        ),
    )
    # The rollout plans: `follow` gives the controller those of every request path swapped in
    # (a config reload's included); they apply from its next decision.
    rollouts = RolloutController(
        flags, reports, rollout_settings(settings), settings.flag_defaults()
    )
    flags.listeners.append(rollouts.follow)
    if metrics is not None:
        rollouts.observers.append(metrics.recorder.rollout_decision)
    state = GatewayState()
    recorder = build_sample_writer(settings)
    # The dashboard reads the metric families a scrape renders (every worker's, under
    # --workers N); with metrics off it has no traffic to show, only the routes and flags.
    # It outlives reloads (its history), reading the inventory of the path served now.
    served: list[RequestPath] = []
    dashboard = Dashboard(
        registry=CollectorRegistry() if metrics is None else metrics,
        inventory=lambda: served[0].inventory,
        routes=lambda: served[0].settings.routes,
        flags=flags,
        reports=reports,
        recent_mismatches=settings.shadow.recent_mismatches,
    )
    # Every finished request is seen by the rollouts and, when on, the metrics (its facts).
    observers = (
        [outcomes.observe] if metrics is None else [outcomes.observe, metrics.recorder.request]
    )

    def follow(path: RequestPath) -> None:
        served[:] = [path]
        breakers[:] = path.breakers
        guards[:] = path.guards
        flag_routes.clear()
        flag_routes.update(labels_by_flag(path.plans))
        rollouts.reconfigure(rollout_settings(path.settings), path.settings.flag_defaults())
        if metrics is not None:
            templates = {plan.label: plan.template for plan in path.plans}
            metrics.recorder.watch(
                legacy=legacy,
                breakers=[(p.template, p.breaker) for p in path.plans if p.breaker is not None],
                shadow=results,
                template=lambda label: templates.get(label, label),
                route_of=path.route_of,
                rollouts=lambda: flags.state.rollouts,
            )

    def build_request_path(settings: Settings, previous: RequestPath | None) -> RequestPath:
        """What a config reload replaces (``gateway.live_config``): the route plans and table,
        the admin endpoints, the dispatcher and the middleware, over the parts built above."""
        plans = build_route_plans(settings, service_apps, legacy_app, shadow)
        if previous is not None:
            plans = keep_unchanged_plans(previous, settings, plans)
        table = build_route_table(settings, plans)
        inventory = build_inventory(wsgi_app, {n: s.app for n, s in services.items()}, table)
        problems = inventory.route_problems(settings.source)
        if problems:
            raise ConfigError(problems)
        # Rebuilt, so a reload applies new keys and policies (the services keep the codec).
        request_auth = build_auth(settings, wsgi_app)
        docs = app_docs(
            settings,
            wsgi_app,
            {n: s.app for n, s in services.items()},
            table,
            flags,
            request_auth.policies,
        )
        admin = AdminApp(
            state=state,
            inventory=inventory,
            flags=flags,
            reports=reports,
            admin_roles=settings.server.admin_roles,
            routers=[rollout_router(RolloutCommands(settings, flags), flags)],
            root_routers=[docs],
            metrics=metrics,
        )
        admin_app = DashboardApp(
            admin, dashboard=dashboard, admin_roles=settings.server.admin_roles
        )
        dispatcher = Dispatcher(
            table=table,
            legacy_rules=RouteTable(inventory.legacy_routes),
            legacy=legacy_app,
            gateway_app=traced(admin_app, GATEWAY),
            flags=flags,
            override_header=settings.flags.override_header,
            recording=build_recording(settings, recorder, flags),
        )
        middleware = build_middleware(settings, request_auth, tracing, observers=observers)
        handler = wrap(dispatcher, middleware)
        return RequestPath(
            settings, handler, tuple(plans), table, inventory, dispatcher.route_template
        )

    return GatewayApp(
        path=build_request_path(settings, None),
        rebuild=build_request_path,
        follow=follow,
        legacy=legacy,
        services=services,
        state=state,
        flags=flags,
        shadow=shadow,
        reports=reports,
        tracing=tracing,
        rollouts=rollouts,
        recorder=recorder,
        metrics=metrics,
        dashboard=dashboard,
    )
