"""A stand-in for ``gateway.metrics``: the families the dashboard reads, filled from this worker.

Until the gateway's own Prometheus metrics exist, ``StandinMetrics`` fills a
``prometheus_client.CollectorRegistry`` with the agreed names and labels, so that the real
server's dashboard shows real numbers: ``StandinMetricsMiddleware`` (outermost) counts each
request from its facts once it has ended, and ``StandinCollector`` reports this worker's shadow
results and breakers when the registry is collected::

    standin = StandinMetrics(plans, shadow_results)
    handler = standin.wrap(handler)          # outermost, around the request-context middleware
    registry = standin.registry              # what the dashboard reads

Per process only (no multiprocess mode): under ``--workers N`` each worker shows its own
traffic. This whole module goes away when ``gateway.metrics`` provides the registry.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.context import FACTS_KEY, RequestFacts
from gateway.route_plan import RoutePlan
from gateway.shadow.results import ShadowResults

UNMATCHED = "<unmatched>"
_CAUSES = {"error": "exception", "timeout": "timeout"}
_OUTCOMES = {
    "matches": "match",
    "mismatches": "mismatch",
    "noisy": "noisy",
    "candidate_errors": "candidate_error",
}


class StandinMetrics:
    def __init__(self, plans: Sequence[RoutePlan], results: ShadowResults) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "gateway_requests_total",
            "Requests answered, by route template, method, backend and status class.",
            ["route", "method", "backend", "status_class"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            ["route", "method", "backend"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "gateway_fallbacks_total",
            "Requests legacy answered in the new side's place, by cause.",
            ["route", "cause"],
            registry=self.registry,
        )
        self.registry.register(StandinCollector(plans, results))

    def wrap(self, app: ASGIApp) -> ASGIApp:
        return StandinMetricsMiddleware(app, metrics=self)

    def record(self, facts: RequestFacts, status: int, seconds: float) -> None:
        route = facts.route or UNMATCHED
        self.requests.labels(route, facts.method, facts.backend, f"{status // 100}xx").inc()
        self.duration.labels(route, facts.method, facts.backend).observe(seconds)
        if facts.breaker == "open":
            self.fallbacks.labels(route, "breaker").inc()
        elif facts.fallback is not None:
            self.fallbacks.labels(route, _CAUSES.get(facts.fallback, "status")).inc()


class StandinMetricsMiddleware:
    """Counts every HTTP request once it has ended (its facts say where it went)."""

    def __init__(self, app: ASGIApp, *, metrics: StandinMetrics) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            facts = scope.get(FACTS_KEY)
            if isinstance(facts, RequestFacts):
                self._metrics.record(facts, status, time.perf_counter() - started)


class StandinCollector(Collector):
    """This worker's shadow counts and open breakers, by route template."""

    def __init__(self, plans: Sequence[RoutePlan], results: ShadowResults) -> None:
        self._templates = {plan.label: plan.template for plan in plans}
        self._breakers = [(plan.template, plan.breaker) for plan in plans if plan.breaker]
        self._results = results

    def collect(self) -> Iterable[Metric]:
        shadow = CounterMetricFamily(
            "gateway_shadow_samples",
            "Shadow copies compared, by outcome.",
            labels=["route", "outcome"],
        )
        for label, results in list(self._results.routes.items()):
            route = self._templates.get(label, label)
            for counter, outcome in _OUTCOMES.items():
                shadow.add_metric([route, outcome], results.counts.get(counter, 0))
        skipped = CounterMetricFamily(
            "gateway_shadow_skipped",
            "Requests eligible for a shadow copy that got none, by reason.",
            labels=["route", "reason"],
        )
        for label, results in list(self._results.routes.items()):
            for reason, count in list(results.skipped.items()):
                skipped.add_metric([self._templates.get(label, label), reason], count)
        breakers = GaugeMetricFamily(
            "gateway_breaker_open", "1 while the route's breaker is open.", labels=["route"]
        )
        for route, breaker in self._breakers:
            breakers.add_metric([route], 1.0 if breaker.state == "open" else 0.0)
        return [shadow, skipped, breakers]
