"""The process that decides: one per flag store at a time, chosen by a lease in the store.

Every worker runs a ``RolloutController``. Each ``interval`` it looks at the running
rollouts; for each one whose lease is free, expired or its own, it adds up every live worker's
outcomes for the current step (the worker reports: every worker of every host sharing the
store), analyses them, and writes its verdict with the lease renewed, advancing the step when
it held long enough and is healthy, or rolling back to legacy at once on a breach. A process
that dies stops renewing; its lease expires after ``LEASE_INTERVALS`` intervals and another
process continues the step where it was (its window and start time are in the store)::

    controller = RolloutController(flags, reports, outcomes, plans_by_flag, defaults)
    async with controller:      # a lifespan component
        ...
    controller.reconfigure(new_plans_by_flag, new_defaults)   # a config reload

A reload's plans apply from the next decision: a running rollout keeps the step it is on and
the steps it started with (they are in the shared state, where every host reads them), and the
next analysis uses the new thresholds, ``hold`` and ``interval``; new ``steps`` apply to the
rollouts started after the reload.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict

import structlog

from gateway.flags.model import FlagSpec, FlagState
from gateway.flags.runtime import FlagRuntime
from gateway.reports import ReportPublisher, worker_id
from gateway.rollout.analysis import Thresholds, Verdict, analyse
from gateway.rollout.changes import judge
from gateway.rollout.outcomes import merge_outcomes
from gateway.settings import RolloutSettings
from gateway.storage.tasks import PeriodicTask

log = structlog.get_logger("gateway.rollout")

#: A lease lasts this many analysis intervals without renewal.
LEASE_INTERVALS = 3

#: Told of every step this process decided: (flag, decision, cause). ``decision``: ``advance``,
#: ``complete`` or ``rollback``; ``cause``: the check a rollback failed (``Verdict.check``),
#: ``healthy`` otherwise.
DecisionObserver = Callable[[str, str, str], None]


def thresholds_of(settings: RolloutSettings) -> Thresholds:
    return Thresholds(
        min_requests=settings.min_requests,
        alpha=settings.alpha,
        max_error_rate_increase=settings.max_error_rate_increase,
        max_latency_ratio=settings.max_latency_ratio,
        max_mismatch_rate=settings.max_mismatch_rate,
    )


class RolloutController:
    def __init__(
        self,
        flags: FlagRuntime,
        reports: ReportPublisher,
        settings_by_flag: Mapping[str, RolloutSettings],
        defaults: Mapping[str, FlagSpec],
    ) -> None:
        self._flags = flags
        self._reports = reports
        self._state = FlagState()
        # A failed analysis must never stop the next one. The pace is read before each round,
        # so a reload's new ``interval`` applies from the next one.
        self._rounds = PeriodicTask(
            lambda: self._tick,
            self._decide_now,
            logger=log,
            failure_event="rollout.analysis_failed",
            stop_timeout=2.0,
        )
        self._running = False
        self.holder = worker_id()
        self.observers: list[DecisionObserver] = []
        self._settings: Mapping[str, RolloutSettings] = {}
        self._defaults: Mapping[str, FlagSpec] = {}
        self._tick = 10.0
        self.reconfigure(settings_by_flag, defaults)

    def reconfigure(
        self, settings_by_flag: Mapping[str, RolloutSettings], defaults: Mapping[str, FlagSpec]
    ) -> None:
        """Decide with these plans and flag defaults from the next round on (a config reload)."""
        self._settings = dict(settings_by_flag)
        self._defaults = dict(defaults)
        self._tick = min((s.interval for s in self._settings.values()), default=10.0)
        if self._running and self._settings:
            self._rounds.start()

    def follow(self, state: FlagState) -> None:
        """The latest shared state (the flag runtime calls this on every new one)."""
        self._state = state

    async def __aenter__(self) -> RolloutController:
        self._running = True
        if self._settings:
            self._rounds.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._running = False
        await self._rounds.stop()

    async def _decide_now(self) -> None:
        await self.decide(time.time())

    async def decide(self, now: float) -> None:
        """One round: judge every running rollout this process may lead."""
        for flag, rollout in list(self._state.rollouts.items()):
            settings = self._settings.get(flag)
            if rollout.status != "running" or settings is None:
                continue
            if rollout.lease_holder not in (None, self.holder) and rollout.lease_expires > now:
                continue  # another process leads this rollout
            outcomes = merge_outcomes(await self._reports.read_all(), flag, rollout.step_id)
            verdict = analyse(outcomes, thresholds_of(settings), shadow=rollout.current == "shadow")
            action = _action(verdict, held=now - rollout.step_started, hold=settings.hold)
            recorded = {**asdict(verdict), "at": now}
            reason = None if action == "hold" else f"rollout {action}: {verdict.reason}"
            state = await self._flags.update(
                judge(
                    flag,
                    rollout.step_id,
                    self.holder,
                    now=now,
                    lease=settings.interval * LEASE_INTERVALS,
                    verdict=recorded,
                    action=action,
                    defaults=self._defaults.get(flag, FlagSpec()),
                ),
                actor=f"rollout ({self.holder})",
                reason=reason,
            )
            after = state.rollouts.get(flag)
            if after is not None and (after.step_id, after.status) != (
                rollout.step_id,
                rollout.status,
            ):
                _log_transition(flag, action, rollout.step, after.step, after.status, verdict)
                decision = "complete" if after.status == "completed" else action
                for observer in self.observers:
                    observer(flag, decision, verdict.check or "healthy")


def _action(verdict: Verdict, *, held: float, hold: float) -> str:
    if verdict.status == "breach":
        return "rollback"
    if verdict.status == "healthy" and held >= hold:
        return "advance"
    return "hold"


def _log_transition(
    flag: str, action: str, before: int, after: int, status: str, verdict: Verdict
) -> None:
    event = "rollout.rolled_back" if action == "rollback" else "rollout.advanced"
    log.warning(
        event,
        flag=flag,
        step_before=before,
        step_after=after,
        status=status,
        reason=verdict.reason,
        measured=verdict.measured,
    )
