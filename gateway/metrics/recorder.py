"""The request path's side of the metrics: plain-Python cells, flushed into prometheus-client.

prometheus-client takes a lock and builds a label tuple on every ``inc()`` and ``observe()``
(and, in multiprocess mode, writes an mmap'd file): several microseconds for the five or so
values one request updates. The gateway's request path records into this worker's own cells
instead (a dict lookup and a few integer additions, about a microsecond), and ``flush()`` adds
what accumulated into the families once a second, before every scrape and at shut-down. All of it
runs on the event loop's thread, so the cells need no lock.

Most of a request's numbers come from its ``RequestFacts`` when it ends (route, backend, status,
duration, flag decision, fallback, edge rejection): the routing code records nothing itself.
What lives elsewhere is read at flush time from the objects that already keep it: the shadow
results' counts, the breakers' states, the legacy pool's occupancy and admission counters::

    recorder = Recorder()
    recorder.request(facts, status=200, seconds=0.004)   # the request-context middleware
    recorder.flush(families)                             # the flusher, the scrape endpoint
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from gateway.context import RequestFacts
from gateway.metrics.families import LATENCY_BUCKETS, UNMATCHED, Families
from gateway.rollout.state import STATUSES

#: Where the recorder is in the server's lifespan state, for the HTTP protocol's refusals.
STATE_KEY = "gateway.metrics"
#: Methods that are their own label value; any other token is ``other`` (a client can send any).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})
#: ``facts.failure`` / ``facts.fallback`` spellings → the ``cause`` label.
_CAUSES = {"error": "exception", "timeout": "timeout"}
#: ShadowResults' counters → the ``outcome`` label. ``matches`` includes the noisy ones.
_OUTCOMES = (
    ("mismatches", "mismatch"),
    ("noisy", "noisy"),
    ("candidate_errors", "candidate_error"),
)


class _Cell:
    """One (route, method, backend)'s requests since the last flush."""

    __slots__ = ("buckets", "classes", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.classes = [0, 0, 0, 0]  # 2xx 3xx 4xx 5xx
        self.total = 0.0


class LegacyPool(Protocol):
    threads: int

    @property
    def busy_threads(self) -> int: ...
    @property
    def admission_waits(self) -> int: ...
    @property
    def admission_rejections(self) -> int: ...


class ShadowCounts(Protocol):
    """What the recorder reads of ``gateway.shadow.results.ShadowResults``."""

    def counts(self) -> dict[str, tuple[dict[str, int], dict[str, int]]]: ...


class BreakerLike(Protocol):
    @property
    def state(self) -> str: ...


class RolloutLike(Protocol):
    """What the recorder reads of ``gateway.rollout.state.RolloutState``."""

    @property
    def status(self) -> str: ...
    @property
    def current(self) -> int | str: ...


class Recorder:
    def __init__(self) -> None:
        self._cells: dict[tuple[str, str, str], _Cell] = {}
        self._events: dict[tuple[str, ...], int] = {}
        #: Requests each backend is serving now (``counted`` wrappers).
        self.in_flight: dict[str, int] = {}
        # Sources read at flush time (``watch``), and what was flushed of their running totals.
        self._legacy: LegacyPool | None = None
        self._breakers: list[tuple[str, BreakerLike]] = []
        self._shadow: ShadowCounts | None = None
        self._template: Callable[[str], str] = lambda label: label
        self._route_of: Callable[[str, str], str | None] = lambda method, path: None
        self._flushed: dict[tuple[str, ...], int] = {}
        self._rollouts: Callable[[], Mapping[str, RolloutLike]] = dict
        #: Flags whose rollout gauges were set (a rollout that disappears has its series reset).
        self._rollout_flags: set[str] = set()

    def watch(
        self,
        *,
        legacy: LegacyPool | None = None,
        breakers: Sequence[tuple[str, BreakerLike]] = (),
        shadow: ShadowCounts | None = None,
        template: Callable[[str], str] | None = None,
        route_of: Callable[[str, str], str | None] | None = None,
        rollouts: Callable[[], Mapping[str, RolloutLike]] | None = None,
    ) -> None:
        """Read these at every flush. ``breakers``: (route template, breaker) pairs; ``shadow``
        names routes by label, which ``template`` turns into the route template. ``route_of``
        (method, path) names the route of a request refused before it was routed.
        ``rollouts``: the rollouts by flag, as the shared flag state has them now."""
        self._legacy = legacy
        if rollouts is not None:
            self._rollouts = rollouts
        self._breakers = list(breakers)
        self._shadow = shadow
        if template is not None:
            self._template = template
        if route_of is not None:
            self._route_of = route_of

    # -- the request path ----------------------------------------------------------------------

    def request(self, facts: RequestFacts, status: int | None, seconds: float) -> None:
        """Record one finished HTTP request from its facts."""
        route = facts.route
        if route is None:
            # Refused before routing (401, 403, 413...) or matched nothing: rare, so the
            # lookup again costs nothing on the common path.
            route = self._route_of(facts.method, facts.path) or UNMATCHED
        method = facts.method if facts.method in _METHODS else "other"
        key = (route, method, facts.backend)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = _Cell()
        cell.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        cell.total += seconds
        if status is None:
            # No answer was sent: the client left first (nginx's 499), or the gateway failed.
            cell.classes[2 if facts.disconnected else 3] += 1
        else:
            # 2xx..5xx at 0..3; a 1xx (ASGI has none to send) with the 2xx.
            cell.classes[max(0, min(status // 100, 5) - 2)] += 1
        # The rarer facts: each one an event count.
        decision = facts.decision
        if decision is not None:
            self._count(("decision", route, decision.flag, decision.side, decision.reason))
        if facts.fallback is not None:
            self._count(("fallback", route, _cause(facts.fallback)))
        elif facts.breaker == "open":
            self._count(("fallback", route, "breaker"))
        if facts.rejected is not None:
            self._count(("rejected", str(status or 0), facts.rejected))

    def rejected(self, status: int, reason: str) -> None:
        """A request refused below the ASGI app (the HTTP protocol's 400/408/431)."""
        self._count(("rejected", str(status), reason))

    def rollout_decision(self, flag: str, decision: str, cause: str) -> None:
        """A rollout step this process decided (``gateway.rollout.controller``)."""
        self._count(("rollout", flag, decision, cause))

    def _count(self, key: tuple[str, ...]) -> None:
        self._events[key] = self._events.get(key, 0) + 1

    # -- into prometheus-client ----------------------------------------------------------------

    def flush(self, families: Families) -> None:
        """Add everything recorded since the last flush to ``families``; set the gauges."""
        cells, self._cells = self._cells, {}
        events, self._events = self._events, {}
        for (route, method, backend), cell in cells.items():
            for status_class, number in zip(
                ("2xx", "3xx", "4xx", "5xx"), cell.classes, strict=True
            ):
                if number:
                    families.requests.labels(route, method, backend, status_class).inc(number)
            histogram = families.duration.labels(route, method, backend)
            # Histogram has no bulk add: add to its per-bucket values, as observe() does
            # (pinned prometheus-client; tests/test_upstream_internals.py checks the shape).
            for index, number in enumerate(cell.buckets):
                if number:
                    histogram._buckets[index].inc(number)
            histogram._sum.inc(cell.total)
        for key, number in events.items():
            kind, labels = key[0], key[1:]
            if kind == "decision":
                families.flag_decisions.labels(*labels).inc(number)
            elif kind == "fallback":
                families.fallbacks.labels(*labels).inc(number)
            elif kind == "rollout":
                families.rollout_decisions.labels(*labels).inc(number)
            else:
                families.edge_rejections.labels(*labels).inc(number)
        for backend, number in self.in_flight.items():
            families.in_flight.labels(backend).set(number)
        self._flush_sources(families)

    def _flush_sources(self, families: Families) -> None:
        legacy = self._legacy
        if legacy is not None:
            families.legacy_pool.labels("busy").set(legacy.busy_threads)
            families.legacy_pool.labels("size").set(legacy.threads)
            self._add(families.admission_waits.inc, ("waits",), legacy.admission_waits)
            self._add(families.admission_rejections.inc, ("503",), legacy.admission_rejections)
        # Two plans may share a template (GET and POST of one path): the worse one shows.
        open_routes: dict[str, int] = {}
        for route, breaker in self._breakers:
            is_open = int(breaker.state != "closed")
            open_routes[route] = max(open_routes.get(route, 0), is_open)
        for route, is_open in open_routes.items():
            families.breaker_open.labels(route).set(is_open)
        self._flush_rollouts(families)
        if self._shadow is not None:
            for label, (counts, skipped) in self._shadow.counts().items():
                route = self._template(label)
                samples = families.shadow_samples
                matches = counts.get("matches", 0) - counts.get("noisy", 0)
                self._add(samples.labels(route, "match").inc, ("s", label, "match"), matches)
                for counter, outcome in _OUTCOMES:
                    add = samples.labels(route, outcome).inc
                    self._add(add, ("s", label, outcome), counts.get(counter, 0))
                for reason, number in skipped.items():
                    add = families.shadow_skipped.labels(route, reason).inc
                    self._add(add, ("k", label, reason), number)

    def _flush_rollouts(self, families: Families) -> None:
        rollouts = self._rollouts()
        for flag, rollout in rollouts.items():
            current = rollout.current
            families.rollout_step_percentage.labels(flag).set(
                0 if isinstance(current, str) else current
            )
            for status in STATUSES:
                families.rollout_state.labels(flag, status).set(int(rollout.status == status))
        for flag in self._rollout_flags - set(rollouts):
            # Gone (its flag deleted): zero first, as multiprocess files keep a removed value.
            families.rollout_step_percentage.labels(flag).set(0)
            families.rollout_step_percentage.remove(flag)
            for status in STATUSES:
                families.rollout_state.labels(flag, status).set(0)
                families.rollout_state.remove(flag, status)
        self._rollout_flags = set(rollouts)

    def _add(self, inc: Callable[[float], None], key: tuple[str, ...], running_total: int) -> None:
        """Add to a counter what a running total grew by since the last flush."""
        grown = running_total - self._flushed.get(key, 0)
        if grown > 0:
            inc(grown)
            self._flushed[key] = running_total


def _cause(failure: str) -> str:
    return _CAUSES.get(failure, "status" if failure.startswith("status-") else failure)
