"""The dispatcher: the innermost gateway app, which hands each request to one backend.

Four steps: the gateway's own prefix → the route table's match → the route's flag decision →
the route plan serves it (``gateway.route_plan``), through the recording hook when the route's
exchanges are being recorded (``gateway.recording.hook``). A request no configured route
matches goes to the legacy catch-all, labelled with the Flask rule it hits; when no Flask rule
matches it either but a service route does with a trailing slash added, that route's service
gets it (and redirects, as both FastAPI and Flask do for a route that ends in ``/``). Backends
see the same path the client sent, with no prefix stripped::

    dispatcher = Dispatcher(table=RouteTable(plans), legacy_rules=RouteTable(flask_rules),
                            legacy=legacy_app, gateway_app=admin, flags=flag_runtime,
                            recording=hook)
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.context import GATEWAY, LEGACY, request_facts
from gateway.flags.runtime import FlagRuntime
from gateway.recording.hook import RecordingHook
from gateway.route_plan import RoutePlan
from gateway.routes import RouteMatch, RouteTable, Rule

GATEWAY_PREFIX = "/_gateway/"


class Dispatcher:
    def __init__(
        self,
        *,
        table: RouteTable[RoutePlan],
        legacy_rules: RouteTable[Rule],
        legacy: ASGIApp,
        gateway_app: ASGIApp,
        flags: FlagRuntime,
        override_header: str = "X-Gateway-Override",
        recording: RecordingHook | None = None,
    ) -> None:
        self._table = table
        self._legacy_rules = legacy_rules
        self._legacy = legacy
        self._gateway_app = gateway_app
        self._flags = flags
        self._override_header = override_header.lower().encode("latin-1")
        self._recording = recording

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        facts = request_facts(scope)
        path = facts.path
        if path.startswith(GATEWAY_PREFIX):
            facts.backend = GATEWAY
            await self._gateway_app(scope, receive, send)
            return
        match = self._table.match(facts.method, path)
        # Matched with a trailing slash added: the service only redirects, so nothing is recorded.
        respelled = False
        if match is None:
            # Not configured: the legacy catch-all. Label the line with the Flask rule it hits.
            rule = self._legacy_rules.match(facts.method, path)
            if rule is None:
                match = self._other_spelling(facts.method, path)
                respelled = True
            if match is None:
                if rule is not None:
                    facts.route = rule.route.template
                facts.backend = LEGACY
                await self._legacy(scope, receive, send)
                return
        plan = match.route
        facts.route = plan.template
        decision = None
        if plan.flag is not None:
            evaluate = self._flags.evaluate
            if facts.spans is not None:
                evaluate = facts.spans.flag_decision(evaluate)
            decision = evaluate(
                plan.flag, facts.identity, _client_address(scope), self._override(scope)
            )
            facts.decision = decision
        recording = self._recording
        if recording is not None and not respelled and scope["type"] == "http":
            wanted = recording.wanted(plan.template, facts.method)
            if wanted is not None:

                async def serve(scope: Scope, receive: Receive, send: Send) -> None:
                    await plan.serve(decision, facts, scope, receive, send)

                await recording.record(wanted, serve, scope, receive, send)
                return
        await plan.serve(decision, facts, scope, receive, send)

    def route_template(self, method: str, path: str) -> str | None:
        """The template of the route (or Flask rule) that would serve ``method path``: for a
        request answered before the dispatcher matched it (a refusal), so it is labelled
        (``gateway.metrics``) as those that got through."""
        match = self._table.match(method, path)
        if match is not None:
            return match.route.template
        rule = self._legacy_rules.match(method, path)
        return rule.route.template if rule is not None else None

    def _other_spelling(self, method: str, path: str) -> RouteMatch[RoutePlan] | None:
        """The service route that ``path`` names with a trailing slash added, when no Flask rule
        claims ``path`` itself: the service redirects to its own spelling (FastAPI's
        ``redirect_slashes``), as Flask does for a rule that ends in ``/`` (``strict_slashes``).
        Not the other way round: for ``/a/`` against a rule ``/a`` Flask answers 404, and
        an unmigrated spelling keeps behaving as it did."""
        if path.endswith("/"):
            return None
        match = self._table.match(method, path + "/")
        if match is None or match.route.backend == LEGACY:
            return None
        return match

    def _override(self, scope: Scope) -> bytes | None:
        for name, value in scope["headers"]:
            if name == self._override_header:
                override: bytes = value
                return override
        return None


def _client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None
