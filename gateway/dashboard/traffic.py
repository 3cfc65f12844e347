"""Traffic over time, from the gateway's Prometheus counters: readings, their history, windows.

A *reading* is the cumulative counters of one moment, taken from any ``prometheus_client``
registry (anything with ``.collect()``) by the agreed family names. The *history* keeps readings
taken every few seconds (``gateway.dashboard.sampler``); a window's numbers are the difference
between the reading now and the one a window ago, as Prometheus' ``increase()`` computes them::

    history = History()
    history.add(read_registry(registry))
    now = read_registry(registry)
    window = history.window(now, 300)            # the last 5 minutes (or since the start)
    window.share_new, window.sides["new"].quantile(0.99)

Requests are split into two *sides*: ``legacy`` and ``new`` (any service). What the gateway
answered itself (``backend="gateway"``: its endpoints, auth refusals) is on neither side.

Why not PromQL: the dashboard must work with no Prometheus server; the arithmetic is small.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gateway.context import GATEWAY, LEGACY

Side = Literal["legacy", "new"]
SIDES: tuple[Side, ...] = ("legacy", "new")
#: (route template, method): how the metrics name a route, and how the route table joins them.
RouteKey = tuple[str, str]

REQUESTS = "gateway_requests_total"
DURATION = "gateway_request_duration_seconds"
FALLBACKS = "gateway_fallbacks_total"
BREAKER_OPEN = "gateway_breaker_open"
SHADOW_SAMPLES = "gateway_shadow_samples_total"
SHADOW_SKIPPED = "gateway_shadow_skipped_total"


class Collectable(Protocol):
    """A ``prometheus_client`` registry, or anything else that collects metric families."""

    def collect(self) -> Iterable[Any]: ...


def side_of(backend: str) -> Side | None:
    if backend == GATEWAY:
        return None
    return "legacy" if backend == LEGACY else "new"


@dataclass(slots=True)
class Counts:
    """Requests, 5xx answers and the latency histogram (cumulative bucket counts, by upper
    bound) of one side, of one route or of everything."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)

    def add(self, other: Counts) -> None:
        self.requests += other.requests
        self.errors += other.errors
        for bound, count in other.buckets.items():
            self.buckets[bound] = self.buckets.get(bound, 0.0) + count

    def since(self, earlier: Counts | None) -> Counts:
        """The increase from ``earlier``; a counter that went down was reset (a restarted
        worker) and counts from zero, as Prometheus' ``increase()`` assumes."""
        if earlier is None:
            return Counts(self.requests, self.errors, dict(self.buckets))
        return Counts(
            _increase(self.requests, earlier.requests),
            _increase(self.errors, earlier.errors),
            {b: _increase(c, earlier.buckets.get(b, 0.0)) for b, c in self.buckets.items()},
        )

    def quantile(self, q: float) -> float | None:
        """Prometheus' ``histogram_quantile``: linear within the bucket that holds rank q."""
        bounds = sorted(self.buckets)
        if not bounds:
            return None
        total = self.buckets[bounds[-1]]
        if total <= 0:
            return None
        rank = q * total
        lower_bound, lower_count = 0.0, 0.0
        for bound in bounds:
            count = self.buckets[bound]
            if count >= rank:
                if math.isinf(bound):
                    return lower_bound  # the highest finite bound, as Prometheus answers
                if count == lower_count:
                    return bound
                return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                    count - lower_count
                )
            lower_bound, lower_count = bound, count
        return lower_bound


def _increase(now: float, then: float) -> float:
    return now - then if now >= then else now


@dataclass(slots=True)
class Reading:
    """The counters at one moment: per route and side, and what the other panels need."""

    at: float
    routes: dict[RouteKey, dict[Side, Counts]] = field(default_factory=dict)
    #: (route, cause) → fallbacks.
    fallbacks: dict[tuple[str, str], float] = field(default_factory=dict)
    #: route → 1 while its breaker is open.
    breakers_open: dict[str, float] = field(default_factory=dict)
    #: (route, outcome) → shadow samples.
    shadow: dict[tuple[str, str], float] = field(default_factory=dict)
    #: route → requests not shadowed (any reason).
    shadow_skipped: dict[str, float] = field(default_factory=dict)

    def sides(self) -> dict[Side, Counts]:
        """Everything added up per side."""
        totals: dict[Side, Counts] = {side: Counts() for side in SIDES}
        for per_side in self.routes.values():
            for side, counts in per_side.items():
                totals[side].add(counts)
        return totals


def read_registry(registry: Collectable, at: float | None = None) -> Reading:
    """The families the dashboard reads (README "Dashboard"), out of ``registry``."""
    reading = Reading(at=time.time() if at is None else at)
    for family in registry.collect():
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, float(sample.value)
            if name == REQUESTS:
                side = side_of(labels.get("backend", ""))
                if side is not None:
                    counts = _counts(reading, labels, side)
                    counts.requests += value
                    if labels.get("status_class") == "5xx":
                        counts.errors += value
            elif name == DURATION + "_bucket":
                side = side_of(labels.get("backend", ""))
                if side is not None:
                    buckets = _counts(reading, labels, side).buckets
                    bound = float(labels["le"])
                    buckets[bound] = buckets.get(bound, 0.0) + value
            elif name == FALLBACKS:
                key = (labels.get("route", ""), labels.get("cause", ""))
                reading.fallbacks[key] = reading.fallbacks.get(key, 0.0) + value
            elif name == BREAKER_OPEN:
                route = labels.get("route", "")
                reading.breakers_open[route] = max(reading.breakers_open.get(route, 0.0), value)
            elif name == SHADOW_SAMPLES:
                key = (labels.get("route", ""), labels.get("outcome", ""))
                reading.shadow[key] = reading.shadow.get(key, 0.0) + value
            elif name == SHADOW_SKIPPED:
                route = labels.get("route", "")
                reading.shadow_skipped[route] = reading.shadow_skipped.get(route, 0.0) + value
    return reading


def _counts(reading: Reading, labels: Mapping[str, str], side: Side) -> Counts:
    key = (labels.get("route", ""), labels.get("method", ""))
    return reading.routes.setdefault(key, {}).setdefault(side, Counts())


@dataclass(frozen=True, slots=True)
class Window:
    """What happened between two readings."""

    #: Seconds the window really covers: less than asked while the history is younger.
    span: float
    sides: dict[Side, Counts]

    @property
    def requests(self) -> float:
        return sum(counts.requests for counts in self.sides.values())

    @property
    def share_new(self) -> float | None:
        """The share of requests the new side served; ``None`` with no request at all."""
        total = self.requests
        return self.sides["new"].requests / total if total else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "span": round(self.span, 1),
            "requests": round(self.requests),
            "share_new": self.share_new,
            "sides": {side: side_summary(counts, self.span) for side, counts in self.sides.items()},
        }


def side_summary(counts: Counts, span: float) -> dict[str, Any]:
    """Rate (per second), error rate, p50 and p99 (seconds) of one side over ``span``."""
    return {
        "requests": round(counts.requests),
        "rate": counts.requests / span if span > 0 else None,
        "error_rate": counts.errors / counts.requests if counts.requests else None,
        "p50": counts.quantile(0.5),
        "p99": counts.quantile(0.99),
    }


class History:
    """Readings over the last day, thinned as they age: every reading for ``fine`` seconds,
    one a minute after that; per-route detail only for ``detail`` seconds (the route table's
    5-minute window), so a day of history stays a few thousand small entries."""

    def __init__(
        self, *, keep: float = 86_400.0, fine: float = 3_600.0, detail: float = 600.0
    ) -> None:
        self._keep, self._fine, self._detail = keep, fine, detail
        #: (time, totals per side), oldest first.
        self._totals: deque[tuple[float, dict[Side, Counts]]] = deque()
        self._readings: deque[Reading] = deque()

    def add(self, reading: Reading) -> None:
        self._totals.append((reading.at, reading.sides()))
        self._readings.append(reading)
        while self._readings and self._readings[0].at < reading.at - self._detail:
            self._readings.popleft()
        while self._totals and self._totals[0][0] < reading.at - self._keep:
            self._totals.popleft()
        self._thin(reading.at)

    def _thin(self, now: float) -> None:
        """Past ``fine`` seconds, keep a reading only if it is a minute after the one before."""
        kept: deque[tuple[float, dict[Side, Counts]]] = deque()
        last = -math.inf
        for entry in self._totals:
            if entry[0] >= now - self._fine or entry[0] - last >= 60.0:
                kept.append(entry)
                last = entry[0]
        self._totals = kept

    @property
    def started(self) -> float | None:
        return self._totals[0][0] if self._totals else None

    def _baseline_totals(self, since: float) -> tuple[float, dict[Side, Counts]] | None:
        # The first reading at or after the window's start; the oldest one when the history is
        # younger than the window (counters then start from the gateway's start).
        for entry in self._totals:
            if entry[0] >= since:
                return entry
        return self._totals[-1] if self._totals else None

    def window(self, now: Reading, seconds: float) -> Window:
        """The totals per side over the last ``seconds`` (or as far back as the history goes)."""
        baseline = self._baseline_totals(now.at - seconds)
        sides = now.sides()
        if baseline is None or baseline[0] >= now.at:
            return Window(span=0.0, sides={side: Counts() for side in SIDES})
        then_at, then = baseline
        return Window(
            span=now.at - then_at, sides={side: sides[side].since(then[side]) for side in SIDES}
        )

    def route_baseline(self, now: Reading, seconds: float) -> tuple[float, Reading | None]:
        """The reading to subtract for per-route numbers over ``seconds`` (at most ``detail``),
        and the span it gives."""
        for reading in self._readings:
            if reading.at >= now.at - seconds and reading.at < now.at:
                return now.at - reading.at, reading
        return 0.0, None

    def series(self, seconds: float) -> list[dict[str, Any]]:
        """The request split and latency per side between consecutive readings of the last
        ``seconds``: what the plots draw."""
        entries = list(self._totals)
        if not entries:
            return []
        since = entries[-1][0] - seconds
        points = []
        for (then_at, then), (at, now) in itertools.pairwise(entries):
            if at < since or at <= then_at:
                continue
            span = at - then_at
            point: dict[str, Any] = {"at": at}
            for side in SIDES:
                counts = now[side].since(then[side])
                point[side] = {
                    "rate": counts.requests / span,
                    "p50": counts.quantile(0.5),
                    "p99": counts.quantile(0.99),
                }
            points.append(point)
        return points
