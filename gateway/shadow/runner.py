"""Shadow traffic: the primary answers the client, the candidate gets a copy, answers are diffed.

The client's response and latency depend on the primary only. The candidate runs in a task of
its own, after the request is on its way: it is bounded by a timeout, and the number of copies
in flight is capped (past the cap a sample is skipped and counted, never queued). Only GET and
HEAD are copied unless the route says it is side-effect-free, and only bodies small enough to
keep. On a share of samples the primary is asked a second time, and the fields that differ
between its two answers are learned as noise, as Diffy does::

    runner = ShadowRunner(results=ShadowResults(), max_concurrent=16)
    await runner.serve(plan, scope, receive, send, primary=legacy, candidate=service,
                       names=("legacy", "accounts"))
    ...
    await runner.close()          # at shut-down: cancel copies still running
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.context import FACTS_KEY, RequestFacts, request_facts
from gateway.request_body import declared_body_size, read_body
from gateway.shadow.capture import (
    SAFE_METHODS,
    ResponseRecorder,
    call_captured,
    copy_scope,
    replay,
)
from gateway.shadow.compare import Captured, CompareRules, Difference, compare, matches_pattern
from gateway.shadow.results import Mismatch, ShadowResults

log = structlog.get_logger("gateway.shadow")


@dataclass(frozen=True, slots=True)
class ShadowPlan:
    """One route's shadow settings, as the runner uses them."""

    #: The route's label (``route_plan.label_label``): how results name it.
    label: str
    primary: str = "legacy"
    sample_rate: float = 1.0
    noise_sample_rate: float = 0.1
    timeout: float = 5.0
    max_body: int = 64 * 1024
    side_effect_free: bool = False
    rules: CompareRules = field(default_factory=CompareRules)


class ShadowRunner:
    def __init__(
        self,
        *,
        results: ShadowResults,
        max_concurrent: int = 16,
        max_compare_body: int = 1024 * 1024,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self.results = results
        self._max_concurrent = max_concurrent
        self._max_compare_body = max_compare_body
        self._chance = chance
        self._tasks: set[asyncio.Task[None]] = set()
        #: Copies running now (candidate calls and calibrations).
        self.active = 0

    async def serve(
        self,
        plan: ShadowPlan,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        primary: ASGIApp,
        candidate: ASGIApp,
        names: tuple[str, str],
        calibrate_with: ASGIApp | None = None,
    ) -> None:
        """Answer with ``primary``; copy the request to ``candidate`` when it may be copied.

        ``calibrate_with`` asks the primary side a second time for noise calibration (default
        ``primary``): the bare service when ``primary`` is guarded, so a calibration is never
        answered by a fallback nor counted by a breaker.
        """
        facts = request_facts(scope)
        body = await self._copyable_body(plan, scope, receive, facts)
        if body is None:
            await primary(scope, receive, send)
            return
        facts.shadow = names[1]
        # The copy gets its own scope and facts, taken before the primary runs: nothing it does
        # shows on the client's access line, and nothing the primary does changes the copy.
        copy = copy_scope(scope, **{FACTS_KEY: replace(facts, shadow="candidate")})
        recorder = ResponseRecorder(limit=self._max_compare_body, forward=send)
        answered = False
        try:
            await primary(scope, replay(body, receive), recorder)
            # A guarded primary may have handed the request to legacy (fallback, open breaker):
            # then there is no primary answer to compare.
            answered = recorder.complete and facts.backend == names[0]
        finally:
            if answered:
                # The candidate starts once the client has its answer. Run alongside, it would
                # compete with the primary for the event loop and the GIL (a legacy primary
                # runs on a thread): that is latency the client would pay.
                task = asyncio.get_running_loop().create_task(
                    self._shadow(
                        plan,
                        copy,
                        body,
                        calibrate_with or primary,
                        candidate,
                        recorder.captured(),
                        names,
                    )
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                self.active -= 1
                self.results.skip(plan.label, "primary-incomplete")

    async def _copyable_body(
        self, plan: ShadowPlan, scope: Scope, receive: Receive, facts: RequestFacts
    ) -> bytes | None:
        route = plan.label
        if facts.method not in SAFE_METHODS and not plan.side_effect_free:
            self.results.skip(route, "unsafe-method")
            return None
        if plan.sample_rate < 1.0 and self._chance() >= plan.sample_rate:
            return None
        if self.active >= self._max_concurrent:
            self.results.skip(route, "concurrency")
            return None
        declared = declared_body_size(scope)
        if declared is None or declared > plan.max_body:
            self.results.skip(route, "body-too-large")
            return None
        # Counted from here: a slow body must not let more copies past the cap meanwhile.
        self.active += 1
        body = await read_body(receive, declared)
        if body is None:
            self.active -= 1
        return body

    async def _shadow(
        self,
        plan: ShadowPlan,
        scope: Scope,
        body: bytes,
        calibrate_with: ASGIApp,
        candidate: ASGIApp,
        first: Captured,
        names: tuple[str, str],
    ) -> None:
        route, results = plan.label, self.results
        structlog.contextvars.bind_contextvars(shadow=names[1])
        try:
            results.count(route, "sampled")
            started = time.perf_counter()
            answer, error = await self._call(candidate, scope, body, plan.timeout)
            candidate_ms = round((time.perf_counter() - started) * 1000, 1)
            if answer is None:
                results.count(route, "candidate_errors")
                log.warning(
                    "shadow.candidate_failed", route=route, error=error, duration_ms=candidate_ms
                )
                return
            if plan.noise_sample_rate and self._chance() < plan.noise_sample_rate:
                await self._calibrate(plan, calibrate_with, copy_scope(scope), body, first)
            self._judge(plan, scope, first, answer, names)
        finally:
            self.active -= 1

    async def _call(
        self, app: ASGIApp, scope: Scope, body: bytes, limit: float
    ) -> tuple[Captured | None, str | None]:
        """Call ``app`` with a copy of the request, for at most ``limit`` seconds."""
        return await call_captured(app, scope, body, seconds=limit, limit=self._max_compare_body)

    async def _calibrate(
        self, plan: ShadowPlan, primary: ASGIApp, scope: Scope, body: bytes, first: Captured
    ) -> None:
        second, _ = await self._call(primary, scope, body, plan.timeout)
        if second is None or second.status != first.status:
            # A failed or different second answer says nothing about which fields are volatile.
            return
        self.results.count(plan.label, "calibrations")
        noise = {difference.pattern for difference in compare(first, second, plan.rules)}
        if noise:
            self.results.learn_noise(plan.label, noise)

    def _judge(
        self,
        plan: ShadowPlan,
        scope: Scope,
        first: Captured,
        answer: Captured,
        names: tuple[str, str],
    ) -> None:
        route, results = plan.label, self.results
        differences = compare(first, answer, plan.rules)
        if not differences:
            results.count(route, "matches")
            return
        noise = results.noise(route)
        real = [d for d in differences if not _is_noise(d, noise)]
        if not real:
            results.count(route, "matches")
            results.count(route, "noisy")
            return
        facts = request_facts(scope)
        mismatch = Mismatch.build(
            real,
            at=time.time(),
            request_id=facts.request_id,
            route=route,
            method=facts.method,
            # The path only: a query string can carry tokens.
            path=facts.path,
            primary=names[0],
            candidate=names[1],
            primary_status=first.status,
            candidate_status=answer.status,
        )
        results.mismatch(mismatch)
        log.warning(
            "shadow.mismatch",
            route=route,
            primary=names[0],
            candidate=names[1],
            statuses=[first.status, answer.status],
            differences=mismatch.differences[:10],
        )

    async def __aenter__(self) -> ShadowRunner:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Cancel the copies still running (at shut-down)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A task cancelled before it started never ran its ``finally``.
        self.active = 0


def _is_noise(difference: Difference, noise: frozenset[str]) -> bool:
    return any(matches_pattern(pattern, difference.pattern) for pattern in noise)
