"""The dispatcher: the innermost gateway app, which hands each request to one backend.

It reads the canonical path from the request facts, asks the route table, asks the route's flag
(if it has one) which side serves this request, records the decision in the facts (route
template, backend, flag, side, reason) and calls the backend with the request unchanged: a new
service sees the same path the client sent, with no prefix stripped.

::

    plans = build_route_plans(settings, services, legacy_app)   # one per [[routes]] entry
    dispatcher = Dispatcher(table=table, legacy_rules=labels, legacy=legacy_app,
                            plans=plans, shadow=runner, gateway_app=admin, flags=flags)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.context import request_facts
from gateway.flags.runtime import FlagRuntime
from gateway.resilience import Breaker, GuardedService
from gateway.routes import Route, RouteTable
from gateway.settings import LEGACY, RouteSettings, Settings, ShadowRouteSettings
from gateway.shadow.compare import CompareRules
from gateway.shadow.runner import ShadowPlan, ShadowRunner

GATEWAY_PREFIX = "/_gateway/"


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """How one ``[[routes]]`` entry is served: its service (behind the route's guards, when it
    has any) and, for a flagged route, what shadow mode does."""

    app: ASGIApp
    #: The bare service: a shadow copy is never retried on legacy nor counted by the breaker.
    service: ASGIApp
    shadow: ShadowPlan | None = None


class Dispatcher:
    def __init__(
        self,
        *,
        table: RouteTable[Route],
        legacy_rules: RouteTable[Route],
        legacy: ASGIApp,
        plans: Sequence[RoutePlan],
        shadow: ShadowRunner,
        gateway_app: ASGIApp,
        flags: FlagRuntime,
        override_header: str = "X-Gateway-Override",
    ) -> None:
        self._table = table
        self._legacy_rules = legacy_rules
        self._legacy = legacy
        #: Indexed by ``Route.index``: the routes' order in ``[[routes]]``.
        self._plans = tuple(plans)
        self._shadow = shadow
        self._gateway_app = gateway_app
        self._flags = flags
        self._override_header = override_header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        facts = request_facts(scope)
        path = facts.path
        if path.startswith(GATEWAY_PREFIX):
            facts.backend = "gateway"
            await self._gateway_app(scope, receive, send)
            return
        match = self._table.match(facts.method, path)
        if match is not None:
            route = match.route
            facts.route = route.template
            backend = route.backend
            if route.flag is not None:
                decision = self._flags.decide(
                    route.flag, facts.identity, _client_address(scope), self._override(scope)
                )
                facts.extra["flag"] = decision.flag
                facts.extra["decision"] = decision.side
                facts.extra["reason"] = decision.reason
                if decision.bucket is not None:
                    facts.extra["bucket"] = decision.bucket
                if decision.detail is not None:
                    facts.extra["provider_reason"] = decision.detail
                if decision.reason == "shadow":
                    await self._serve_shadowed(route, backend, scope, receive, send)
                    return
                if decision.side == "legacy":
                    backend = LEGACY
            if backend != LEGACY:
                facts.backend = backend
                await self._plans[route.index].app(scope, receive, send)
                return
        else:
            # Not configured: the legacy catch-all. Label the line with the Flask rule it hits.
            rule = self._legacy_rules.match(facts.method, path)
            if rule is not None:
                facts.route = rule.route.template
        facts.backend = LEGACY
        await self._legacy(scope, receive, send)

    async def _serve_shadowed(
        self, route: Route, backend: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        facts = request_facts(scope)
        plan = self._plans[route.index]
        shadow = plan.shadow
        if shadow is None:  # not built for this route: legacy answers, as in legacy mode
            facts.backend = LEGACY
            await self._legacy(scope, receive, send)
            return
        if shadow.primary == "new":
            primary, candidate, names = plan.app, self._legacy, (backend, LEGACY)
        else:
            primary, candidate, names = self._legacy, plan.service, (LEGACY, backend)
        facts.backend = names[0]
        await self._shadow.serve(
            shadow,
            scope,
            receive,
            send,
            primary=primary,
            candidate=candidate,
            names=names,
            # A guarded primary is calibrated with the bare service: never with a fallback.
            calibrate_with=plan.service if shadow.primary == "new" else None,
        )

    def _override(self, scope: Scope) -> bytes | None:
        for name, value in scope["headers"]:
            if name == self._override_header:
                override: bytes = value
                return override
        return None


def _client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def route_label(route: RouteSettings) -> str:
    """How reports name a route: ``GET /api/books/{book_id:int}``."""
    return f"{','.join(route.methods)} {route.path}"


def build_route_plans(
    settings: Settings, services: Mapping[str, ASGIApp], legacy: ASGIApp
) -> list[RoutePlan]:
    """One plan per ``[[routes]]`` entry, in order: its guards and its shadow settings."""
    plans = []
    for route in settings.routes:
        service = services.get(route.backend, legacy)
        label = route_label(route)
        app = service
        if route.backend != LEGACY and (route.timeout or route.fallback or route.breaker):
            breaker = None
            if route.breaker is not None:
                breaker = Breaker(
                    label,
                    failures=route.breaker.failures,
                    window=route.breaker.window,
                    cooldown=route.breaker.cooldown,
                )
            app = GuardedService(
                service,
                legacy=legacy,
                route=label,
                timeout=route.timeout,
                fallback=route.fallback,
                fallback_max_body=route.fallback_max_body,
                breaker=breaker,
            )
        shadow = None
        if route.flag is not None:
            spec = route.shadow or ShadowRouteSettings()
            shadow = ShadowPlan(
                route=label,
                primary=spec.primary,
                sample_rate=spec.sample_rate,
                noise_sample_rate=spec.noise_sample_rate,
                timeout=spec.timeout,
                max_body=spec.max_body,
                side_effect_free=spec.side_effect_free,
                rules=CompareRules(
                    headers=spec.compare_headers,
                    ignore=spec.ignore,
                    unordered=spec.unordered,
                    float_tolerance=spec.float_tolerance,
                ),
            )
        plans.append(RoutePlan(app=app, service=service, shadow=shadow))
    return plans


def breakers_of(plans: Sequence[RoutePlan]) -> list[Breaker]:
    return [
        plan.app.breaker
        for plan in plans
        if isinstance(plan.app, GuardedService) and plan.app.breaker is not None
    ]
