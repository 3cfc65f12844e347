"""The gateway's Prometheus metric families: names, types and labels, declared once.

The names and labels are a contract (the dashboard and deployments build on them); the README's
"Metrics" section lists them. ``route`` is always a route template (``/api/books/{book_id:int}``),
``<unmatched>`` for a request that matched nothing: never a raw path, so the number of series is
bounded by the config and the Flask rules, whatever clients send::

    families = Families(registry)        # registers every family on ``registry``
    families.requests.labels("/api/me", "GET", "accounts", "2xx").inc()

Under ``gateway serve --workers N`` prometheus-client's multiprocess mode stores the values in
files (``PROMETHEUS_MULTIPROC_DIR``); the gauges say how workers' values combine (``livesum``:
the total over live workers; ``livemax``: the worst live worker, e.g. any worker's open breaker).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Request latency buckets, in seconds: sub-millisecond gateway answers up to slow legacy views.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: The ``route`` label of a request no configured route, Flask rule or gateway endpoint matched.
UNMATCHED = "<unmatched>"


class Families:
    """Every family the gateway exports, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter(
            "gateway_requests",
            "Requests answered, by route template, method, backend and status class.",
            ("route", "method", "backend", "status_class"),
            registry=r,
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds",
            "Time from the request's arrival to the end of its response, in seconds.",
            ("route", "method", "backend"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "gateway_requests_in_flight",
            "Requests a backend is serving now (shadow copies and fallback replays included).",
            ("backend",),
            multiprocess_mode="livesum",
            registry=r,
        )
        self.flag_decisions = Counter(
            "gateway_flag_decisions",
            "Flag decisions on flagged routes, by the side chosen and why.",
            ("route", "flag", "side", "reason"),
            registry=r,
        )
        self.fallbacks = Counter(
            "gateway_fallbacks",
            "Requests legacy answered in the new side's place, by cause.",
            ("route", "cause"),
            registry=r,
        )
        self.breaker_open = Gauge(
            "gateway_breaker_open",
            "1 while a route's circuit breaker is open or half-open (in any live worker).",
            ("route",),
            multiprocess_mode="livemax",
            registry=r,
        )
        self.shadow_samples = Counter(
            "gateway_shadow_samples",
            "Shadow copies judged, by outcome (noisy: matched once known noise was ignored).",
            ("route", "outcome"),
            registry=r,
        )
        self.shadow_skipped = Counter(
            "gateway_shadow_skipped",
            "Requests of a shadowed route that were not copied, by reason.",
            ("route", "reason"),
            registry=r,
        )
        self.legacy_pool = Gauge(
            "gateway_legacy_pool_threads",
            "The legacy thread pool: threads busy, and its size (summed over live workers).",
            ("state",),
            multiprocess_mode="livesum",
            registry=r,
        )
        self.admission_waits = Counter(
            "gateway_legacy_admission_waits",
            "Legacy requests that had to wait for a free thread.",
            registry=r,
        )
        self.admission_rejections = Counter(
            "gateway_legacy_admission_rejections",
            "Legacy requests answered 503 because no thread came free in time.",
            registry=r,
        )
        # Rollouts: the state lives in the shared flag store, so every worker exports the same
        # values from its snapshot (``livemax``); a decision is counted by the process making it.
        self.rollout_step_percentage = Gauge(
            "gateway_rollout_step_percentage",
            "The share of users a rollout's current step sends to the new side (shadow: 0).",
            ("flag",),
            multiprocess_mode="livemax",
            registry=r,
        )
        self.rollout_state = Gauge(
            "gateway_rollout_state",
            "1 for a rollout's current state, 0 for the others (one series per flag and state).",
            ("flag", "state"),
            multiprocess_mode="livemax",
            registry=r,
        )
        self.rollout_decisions = Counter(
            "gateway_rollout_decisions",
            "Rollout steps decided, by decision (advance, complete, rollback) and cause (the "
            "breached check of a rollback: error_rate, latency, mismatch, breaker; else healthy).",
            ("flag", "decision", "cause"),
            registry=r,
        )
        self.edge_rejections = Counter(
            "gateway_edge_rejections",
            "Requests the gateway refused itself before any backend (400/408/413/431...).",
            ("status", "reason"),
            registry=r,
        )
