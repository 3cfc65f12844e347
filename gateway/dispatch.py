"""The dispatcher: the innermost gateway app, which hands each request to one backend.

It reads the canonical path from the request facts, asks the route table, asks the route's flag
(if it has one) which side serves this request, records the decision in the facts (route
template, backend, flag, side, reason) and calls the backend with the request unchanged: a new
service sees the same path the client sent, with no prefix stripped.

::

    dispatcher = Dispatcher(table=table, legacy_rules=labels, legacy=legacy_app,
                            services={"catalog": catalog}, gateway_app=admin)
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.context import request_facts
from gateway.flags.runtime import FlagRuntime
from gateway.routes import Route, RouteTable
from gateway.settings import LEGACY

GATEWAY_PREFIX = "/_gateway/"


class Dispatcher:
    def __init__(
        self,
        *,
        table: RouteTable[Route],
        legacy_rules: RouteTable[Route],
        legacy: ASGIApp,
        services: Mapping[str, ASGIApp],
        gateway_app: ASGIApp,
        flags: FlagRuntime,
        override_header: str = "X-Gateway-Override",
    ) -> None:
        self._table = table
        self._legacy_rules = legacy_rules
        self._legacy = legacy
        self._services = dict(services)
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
                if decision.side == "legacy":
                    backend = LEGACY
            if backend != LEGACY:
                facts.backend = backend
                await self._services[backend](scope, receive, send)
                return
        else:
            # Not configured: the legacy catch-all. Label the line with the Flask rule it hits.
            rule = self._legacy_rules.match(facts.method, path)
            if rule is not None:
                facts.route = rule.route.template
        facts.backend = LEGACY
        await self._legacy(scope, receive, send)

    def _override(self, scope: Scope) -> bytes | None:
        for name, value in scope["headers"]:
            if name == self._override_header:
                override: bytes = value
                return override
        return None


def _client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None
