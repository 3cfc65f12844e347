"""One ``[[routes]]`` entry, ready to serve: its template and methods, its backend, its flag, the
app that serves it (the service, behind the route's guards when it has any), its breaker and
its shadow settings.

The route table holds plans (``RouteTable[RoutePlan]``); the dispatcher matches one, asks the
route's flag (if it has one) and hands the request over. Everything about *how* a configured
route is served lives here, so a new per-route behaviour is a field on the plan, a key in
``RouteSettings`` and a line in ``gateway.build``::

    plan = RoutePlan(template="/api/me", methods=frozenset({"GET"}), backend="accounts",
                     label="GET /api/me", app=accounts, service=accounts, legacy=legacy_app)
    await plan.serve(decision, facts, scope, receive, send)   # decision: None when unflagged
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.context import LEGACY, RequestFacts
from gateway.flags.model import FlagDecision
from gateway.resilience import Breaker
from gateway.shadow.runner import ShadowPlan, ShadowRunner


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutePlan:
    #: A path template: ``/api/books/{book_id:int}``.
    template: str
    methods: frozenset[str]
    #: ``LEGACY`` or the service that serves the route.
    backend: str
    #: Decides per request between ``backend`` and legacy; ``None``: ``backend`` always serves.
    flag: str | None = None
    #: What serves the route's new side: ``service`` behind the route's guards, or ``service``.
    app: ASGIApp
    #: The bare service: a shadow copy is never retried on legacy nor counted by the breaker.
    service: ASGIApp
    legacy: ASGIApp
    #: The guards' circuit breaker, when the route has one.
    breaker: Breaker | None = None
    #: How shadow mode samples and compares (a flagged route only).
    shadow: ShadowPlan | None = None
    shadow_runner: ShadowRunner | None = None
    #: How reports and metrics name the route (``route_label``).
    label: str
    #: Where the route was configured, for messages: ``routes[2]``.
    config_key: str = "routes"
    #: ``gateway retire`` ended its migration: the legacy view is gone (``[routes.retired]``).
    retired: bool = False

    async def serve(
        self,
        decision: FlagDecision | None,
        facts: RequestFacts,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Serve a request that matched this route, given its flag's decision."""
        if decision is not None:
            if decision.reason == "shadow":
                await self._serve_shadowed(facts, scope, receive, send)
                return
            if decision.side == "legacy":
                facts.backend = LEGACY
                await self.legacy(scope, receive, send)
                return
        facts.backend = self.backend
        await self.app(scope, receive, send)

    async def _serve_shadowed(
        self, facts: RequestFacts, scope: Scope, receive: Receive, send: Send
    ) -> None:
        shadow, runner = self.shadow, self.shadow_runner
        if shadow is None or runner is None:  # not built for shadowing: legacy answers
            facts.backend = LEGACY
            await self.legacy(scope, receive, send)
            return
        if shadow.primary == "new":
            primary, candidate, names = self.app, self.legacy, (self.backend, LEGACY)
        else:
            primary, candidate, names = self.legacy, self.service, (LEGACY, self.backend)
        facts.backend = names[0]
        await runner.serve(
            shadow,
            scope,
            receive,
            send,
            primary=primary,
            candidate=candidate,
            names=names,
            # A guarded primary is calibrated with the bare service: never with a fallback.
            calibrate_with=self.service if shadow.primary == "new" else None,
        )


def route_label(methods: Sequence[str], template: str) -> str:
    """How reports name a route: ``GET /api/books/{book_id:int}`` (methods in config order)."""
    return f"{','.join(methods)} {template}"
