"""Keeping a failing new side from costing anybody anything: timeouts, fallback, a circuit breaker.

A route whose backend is a service can carry any of three guards (``[[routes]]`` keys):

- ``timeout``: the new side must start its answer in time; otherwise it is cancelled;
- ``fallback``: when the new side raises, times out or answers 5xx before a byte reached the
  client, an idempotent request whose body was small enough to keep is replayed to legacy, and
  the client gets legacy's answer (the access line says ``fallback=<why>``);
- ``breaker``: after ``failures`` failures within ``window`` seconds the route goes to legacy for
  ``cooldown`` seconds; then one trial request decides whether it closes again.

Breakers live in each worker process, as Envoy's outlier detection lives in each proxy: a worker
that sees the failures stops sending, without waiting for the others. Their states are published
with the worker's report (``gateway.reports``) so the admin API and ``gateway routes`` show them::

    guard = GuardedService(service, legacy=legacy_app, label="GET /api/me",
                           timeout=2.0, fallback=True, breaker=Breaker("GET /api/me"))
    await guard(scope, receive, send)
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.context import LEGACY, request_facts
from gateway.errors import send_error
from gateway.request_body import declared_body_size, read_body
from gateway.shadow.capture import IDEMPOTENT_METHODS, replay

log = structlog.get_logger("gateway.resilience")

BreakerState = Literal["closed", "open", "half-open"]
Admission = Literal["closed", "trial"]


class Breaker:
    """One route's circuit breaker: closed → open (after failures) → half-open (one trial)."""

    def __init__(
        self,
        label: str,
        *,
        failures: int = 5,
        window: float = 30.0,
        cooldown: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        #: The route's label (``route_plan.route_label``).
        self.label = label
        self._threshold = failures
        self._window = window
        self._cooldown = cooldown
        self._clock = clock
        self._failures: deque[float] = deque()
        self._opened_at = 0.0
        self._trial_running = False
        self.state: BreakerState = "closed"
        #: How many times it opened since the process started.
        self.trips = 0
        #: Bumped on every change of state, so a report publisher can tell.
        self.changes = 0

    def admit(self) -> Admission | None:
        """May this request go to the new side? ``None``: no, serve it from legacy."""
        if self.state == "closed":
            return "closed"
        if self.state == "open" and self._clock() - self._opened_at >= self._cooldown:
            self.state = "half-open"
            self.changes += 1
            log.info("breaker.half_open", route=self.label)
        if self.state == "half-open" and not self._trial_running:
            self._trial_running = True
            return "trial"
        return None

    def record(self, admission: Admission, ok: bool | None) -> None:
        """The outcome of an admitted request; ``None`` when it never finished (cancelled)."""
        if admission == "trial":
            self._trial_running = False
            if ok is None:
                return  # still half-open: the next request is the trial
            if ok:
                self.state = "closed"
                self.changes += 1
                self._failures.clear()
                log.info("breaker.closed", route=self.label)
            else:
                self._open("trial failed")
            return
        if ok is not False or self.state != "closed":
            return
        now = self._clock()
        failures = self._failures
        failures.append(now)
        while failures and failures[0] <= now - self._window:
            failures.popleft()
        if len(failures) >= self._threshold:
            self._open(f"{len(failures)} failures in {self._window:g}s")

    def _open(self, why: str) -> None:
        self.state = "open"
        self.changes += 1
        self._opened_at = self._clock()
        self._failures.clear()
        self.trips += 1
        log.warning("breaker.opened", route=self.label, why=why, cooldown=self._cooldown)

    def view(self) -> dict[str, Any]:
        view: dict[str, Any] = {"state": self.state, "trips": self.trips}
        if self.state == "open":
            left = self._cooldown - (self._clock() - self._opened_at)
            view["retry_in"] = round(max(left, 0.0), 1)
        else:
            view["recent_failures"] = len(self._failures)
        return view


class GuardedService:
    """A service behind a route's guards; an ASGI app the dispatcher calls instead of it."""

    def __init__(
        self,
        service: ASGIApp,
        *,
        legacy: ASGIApp,
        label: str,
        timeout: float | None = None,
        fallback: bool = False,
        fallback_max_body: int = 64 * 1024,
        breaker: Breaker | None = None,
    ) -> None:
        self._service = service
        self._legacy = legacy
        self.label = label
        self._timeout = timeout
        self._fallback = fallback
        self._fallback_max_body = fallback_max_body
        self.breaker = breaker
        #: Requests legacy answered because the new side failed, since the process started
        #: (published with the worker's report: ``gateway retire`` wants none).
        self.fallbacks = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        facts = request_facts(scope)
        breaker = self.breaker
        admission: Admission | None = "closed"
        if breaker is not None:
            admission = breaker.admit()
            if admission is None:
                facts.breaker = "open"
                facts.backend = LEGACY
                await self._legacy(scope, receive, send)
                return
            if admission == "trial":
                facts.breaker = "trial"

        body: bytes | None = None
        if self._fallback and facts.method in IDEMPOTENT_METHODS:
            declared = declared_body_size(scope)
            if declared is not None and declared <= self._fallback_max_body:
                body = await read_body(receive, declared)
        if body is not None:
            receive = replay(body, receive)
        guard = _FirstByteGuard(send, hold=body is not None)

        ok: bool | None = None
        deadline: asyncio.Timeout | None = None
        try:
            if self._timeout is None:
                await self._service(scope, receive, guard)
            else:
                async with asyncio.timeout(self._timeout) as deadline:
                    guard.on_first_byte = lambda: deadline.reschedule(None)
                    await self._service(scope, receive, guard)
            ok = guard.failure is None
        except Exception as exc:
            ok = False
            # Our deadline only runs until the first byte, so a timeout never cuts a response.
            timed_out = isinstance(exc, TimeoutError) and bool(deadline and deadline.expired())
            guard.failure = "timeout" if timed_out else "error"
            if not timed_out:
                if guard.sent or body is None:
                    raise  # the request-context middleware answers 500 (or aborts) and logs it
                log.warning("route.new_side_failed", route=self.label, exc_info=True)
        finally:
            if breaker is not None and admission is not None:
                breaker.record(admission, ok)

        failure = guard.failure
        if failure is None:
            return
        facts.failure = failure
        if body is not None and not guard.sent:
            facts.fallback = failure
            self.fallbacks += 1
            facts.backend = LEGACY
            await self._legacy(scope, replay(body, receive), send)
        elif failure == "timeout" and not guard.sent:
            await send_error(send, 504, "the service did not answer in time", facts.request_id)


class _FirstByteGuard:
    """Forwards a response, noting a 5xx; with ``hold``, keeps the start message back until the
    first body bytes, and swallows a 5xx whole so legacy can answer instead."""

    __slots__ = ("_held", "_hold", "_send", "failure", "on_first_byte", "sent")

    def __init__(self, send: Send, *, hold: bool) -> None:
        self._send = send
        self._hold = hold
        self._held: Message | None = None
        self.failure: str | None = None
        self.sent = False
        self.on_first_byte: Callable[[], None] | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            status = message["status"]
            if status >= 500:
                self.failure = f"status-{status}"
            if self._hold:
                self._held = message
                return
        elif self._held is not None:
            if self.failure is not None:
                return  # a held 5xx: legacy answers instead
            held, self._held = self._held, None
            self._first_byte()
            await self._send(held)
        if not self.sent:
            self._first_byte()
        await self._send(message)

    def _first_byte(self) -> None:
        self.sent = True
        if self.on_first_byte is not None:
            self.on_first_byte()
            self.on_first_byte = None
