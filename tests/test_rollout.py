"""Rollouts: the statistics that judge a step, the state changes that move it, the outcomes each
worker records, and the controller that leads (one process at a time, by lease)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from gateway.context import RequestFacts
from gateway.flags.model import FlagDecision, FlagSpec, FlagState
from gateway.flags.runtime import FlagRuntime
from gateway.flags.stores import FlagStore
from gateway.rollout.analysis import SideOutcomes, StepOutcomes, Thresholds, analyse
from gateway.rollout.changes import RolloutError, abort, judge, pause, resume, start
from gateway.rollout.controller import RolloutController
from gateway.rollout.outcomes import RolloutOutcomes, merge_outcomes
from gateway.settings import RolloutSettings
from gateway.shadow.results import ShadowResults
from gateway.storage.memory import MemoryStorage

FLAG = "catalog-books"
BASE = FlagSpec(mode="legacy")


def _side(requests: int, errors: int, median_ms: float, *, seed: int) -> SideOutcomes:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data
    durations = [rng.lognormvariate(0, 0.3) * median_ms / 1000 for _ in range(requests)]
    return SideOutcomes(requests=requests, errors=errors, durations=durations)


# -- analysis -------------------------------------------------------------------------------------


def test_too_few_requests_is_not_enough_data_whatever_they_show() -> None:
    outcomes = StepOutcomes(legacy=_side(40, 0, 5, seed=1), new=_side(40, 40, 50, seed=2))

    verdict = analyse(outcomes, Thresholds(min_requests=50))

    assert verdict.status == "not-enough-data"
    assert "40 new and 40 legacy requests (each side needs 50)" in verdict.reason
    assert verdict.check is None


def test_same_behaviour_on_both_sides_is_healthy() -> None:
    outcomes = StepOutcomes(legacy=_side(400, 2, 5, seed=1), new=_side(400, 3, 5, seed=2))

    verdict = analyse(outcomes, Thresholds(min_requests=100))

    assert verdict.status == "healthy"
    assert verdict.measured["requests"] == {"legacy": 400, "new": 400}


def test_a_significantly_higher_error_rate_is_a_breach_named_with_its_test() -> None:
    outcomes = StepOutcomes(legacy=_side(400, 2, 5, seed=1), new=_side(400, 60, 5, seed=2))

    verdict = analyse(outcomes, Thresholds(min_requests=100))

    assert verdict.status == "breach"
    assert verdict.reason.startswith("error rate: new 15.0% vs legacy 0.5% (60/400 vs 2/400)")
    assert "Fisher's exact test p=" in verdict.reason
    assert verdict.measured["test"]["metric"] == "error_rate"
    assert verdict.check == "error_rate"
    assert verdict.measured["test"]["p"] < 0.01


def test_a_few_more_errors_within_the_tolerance_are_not_a_breach() -> None:
    # 2 errors more in 400 is 0.5 points: under the 1-point tolerance, whatever the p-value.
    outcomes = StepOutcomes(legacy=_side(400, 0, 5, seed=1), new=_side(400, 2, 5, seed=2))

    assert analyse(outcomes, Thresholds(min_requests=100)).status == "healthy"


def test_a_five_times_slower_new_side_is_a_latency_breach() -> None:
    outcomes = StepOutcomes(legacy=_side(200, 0, 5, seed=1), new=_side(200, 0, 25, seed=2))

    verdict = analyse(outcomes, Thresholds(min_requests=100))

    assert verdict.status == "breach"
    assert verdict.reason.startswith("latency: new p50 ")
    assert "Mann-Whitney U p=" in verdict.reason
    assert 4 < verdict.measured["test"]["ratio"] < 6
    assert verdict.check == "latency"


def test_a_slightly_slower_new_side_is_tolerated() -> None:
    outcomes = StepOutcomes(legacy=_side(300, 0, 5, seed=1), new=_side(300, 0, 6, seed=2))

    assert analyse(outcomes, Thresholds(min_requests=100)).status == "healthy"


def test_shadow_step_judges_the_mismatch_rate() -> None:
    thresholds = Thresholds(min_requests=100, max_mismatch_rate=0.01)

    few = analyse(StepOutcomes(compared=50, mismatches=50), thresholds, shadow=True)
    clean = analyse(StepOutcomes(compared=500, mismatches=3), thresholds, shadow=True)
    broken = analyse(StepOutcomes(compared=500, mismatches=40), thresholds, shadow=True)

    assert few.status == "not-enough-data"
    assert clean.status == "healthy"
    assert broken.status == "breach"
    assert broken.reason.startswith("shadow mismatches: 40/500 (8.0%, tolerated 1.0%)")
    assert (few.check, clean.check, broken.check) == (None, None, "mismatch")


def test_an_opened_breaker_is_a_breach_at_once() -> None:
    verdict = analyse(StepOutcomes(breaker_opened=1), Thresholds())

    assert verdict.status == "breach"
    assert verdict.reason.startswith("breaker: opened 1 time(s)")
    assert verdict.check == "breaker"


# -- state changes --------------------------------------------------------------------------------


def test_start_sets_the_first_step_and_refuses_a_second_rollout() -> None:
    state = start(FLAG, "GET /api/books", ("shadow", 10, 100), 100.0, BASE)(FlagState())

    rollout = state.rollouts[FLAG]
    assert (rollout.status, rollout.step, rollout.step_started) == ("running", 0, 100.0)
    assert state.flags[FLAG].mode == "shadow"
    with pytest.raises(RolloutError, match="already running"):
        start(FLAG, "GET /api/books", (10, 100), 101.0, BASE)(state)


def test_judge_advances_once_per_step_even_when_two_processes_judge_it() -> None:
    state = start(FLAG, "GET /api/books", (10, 50, 100), 0.0, BASE)(FlagState())
    step_id = state.rollouts[FLAG].step_id

    def advance(holder: str) -> Any:
        return judge(
            FLAG,
            step_id,
            holder,
            now=10.0,
            lease=30.0,
            verdict=None,
            action="advance",
            defaults=BASE,
        )

    once = advance("a")(state)
    twice = advance("a")(once)  # a second write for the same (now old) step changes nothing

    assert once.rollouts[FLAG].step == 1
    assert (once.flags[FLAG].mode, once.flags[FLAG].percentage) == ("canary", 50)
    assert twice == once
    # Another process cannot judge while "a" holds the lease.
    step = once.rollouts[FLAG].step_id
    other = judge(
        FLAG, step, "b", now=11.0, lease=30.0, verdict=None, action="advance", defaults=BASE
    )(once)
    assert other == once
    # ...but can once the lease has expired.
    later = judge(
        FLAG, step, "b", now=41.0, lease=30.0, verdict=None, action="hold", defaults=BASE
    )(once)
    assert later.rollouts[FLAG].lease_holder == "b"


def test_reaching_the_last_step_completes_the_rollout_with_the_flag_at_new() -> None:
    state = start(FLAG, "GET /api/books", (50, 100), 0.0, BASE)(FlagState())

    done = judge(
        FLAG,
        state.rollouts[FLAG].step_id,
        "a",
        now=5.0,
        lease=30.0,
        verdict=None,
        action="advance",
        defaults=BASE,
    )(state)

    assert done.rollouts[FLAG].status == "completed"
    assert done.flags[FLAG].mode == "new"


def test_rollback_sends_the_flag_to_legacy_and_records_why_until_resumed() -> None:
    state = start(FLAG, "GET /api/books", (10, 50, 100), 0.0, BASE)(FlagState())
    verdict = {"status": "breach", "reason": "error rate: new 15.0% vs legacy 0.5%"}

    back = judge(
        FLAG,
        state.rollouts[FLAG].step_id,
        "a",
        now=5.0,
        lease=30.0,
        verdict=verdict,
        action="rollback",
        defaults=BASE,
    )(state)

    rollout = back.rollouts[FLAG]
    assert (rollout.status, rollout.reason) == ("rolled-back", verdict["reason"])
    assert back.flags[FLAG].mode == "legacy"
    with pytest.raises(RolloutError, match="rolled-back, not running"):
        pause(FLAG, "alice")(back)
    again = resume(FLAG, 60.0, BASE)(back)
    assert again.rollouts[FLAG].status == "running"
    assert again.rollouts[FLAG].step_id != rollout.step_id
    assert (again.flags[FLAG].mode, again.flags[FLAG].percentage) == ("canary", 10)


def test_abort_ends_on_legacy_and_refuses_to_resume() -> None:
    state = start(FLAG, "GET /api/books", (10, 100), 0.0, BASE)(FlagState())

    aborted = abort(FLAG, "alice (cli)", BASE)(state)

    assert aborted.rollouts[FLAG].status == "aborted"
    assert aborted.rollouts[FLAG].reason == "aborted by alice (cli)"
    assert aborted.flags[FLAG].mode == "legacy"
    with pytest.raises(RolloutError, match="nothing to resume"):
        resume(FLAG, 1.0, BASE)(aborted)


# -- outcomes -------------------------------------------------------------------------------------


def _facts(side: str, *, fallback: str | None = None, breaker: str | None = None) -> RequestFacts:
    facts = RequestFacts(request_id="r", path="/api/books", method="GET")
    facts.decision = FlagDecision(FLAG, side, "split")  # type: ignore[arg-type]
    facts.fallback = fallback
    facts.breaker = breaker  # type: ignore[assignment]
    return facts


def test_each_worker_counts_the_current_step_by_side_and_merging_adds_workers_up() -> None:
    state = start(FLAG, "GET /api/books", (10, 100), 0.0, BASE)(FlagState())
    step_id = state.rollouts[FLAG].step_id
    workers = []
    for _ in range(2):
        outcomes = RolloutOutcomes(ShadowResults(), {FLAG: ["GET /api/books"]})
        outcomes.follow(state)
        outcomes.observe(_facts("new"), 200, 0.010)
        outcomes.observe(_facts("new"), 503, 0.020)
        outcomes.observe(_facts("new", fallback="timeout"), 200, 2.0)
        outcomes.observe(_facts("legacy"), 200, 0.005)
        outcomes.observe(_facts("legacy", breaker="open"), 200, 0.005)
        workers.append({"rollouts": outcomes.snapshot()})

    total = merge_outcomes([*workers, {"rollouts": {FLAG: {"step_id": "old"}}}], FLAG, step_id)

    assert (total.new.requests, total.new.errors, total.new.fallbacks) == (6, 4, 2)
    assert (total.legacy.requests, total.legacy.errors) == (2, 0)
    assert total.breaker_opened == 2
    assert sorted(total.new.durations)[:2] == [0.01, 0.01]


def test_nothing_is_recorded_without_a_running_rollout_and_a_new_step_starts_from_zero() -> None:
    outcomes = RolloutOutcomes(ShadowResults(), {FLAG: ["GET /api/books"]})
    outcomes.observe(_facts("new"), 200, 0.01)
    assert outcomes.snapshot() == {}

    state = start(FLAG, "GET /api/books", (10, 50, 100), 0.0, BASE)(FlagState())
    outcomes.follow(state)
    outcomes.observe(_facts("new"), 200, 0.01)
    step_id = state.rollouts[FLAG].step_id
    nxt = judge(
        FLAG, step_id, "a", now=1.0, lease=30.0, verdict=None, action="advance", defaults=BASE
    )(state)
    outcomes.follow(nxt)

    snapshot = outcomes.snapshot()[FLAG]
    assert snapshot["step_id"] == nxt.rollouts[FLAG].step_id
    assert snapshot["new"]["requests"] == 0


def test_shadow_comparisons_count_from_the_step_start() -> None:
    results = ShadowResults()
    results.count("GET /api/me", "matches")
    outcomes = RolloutOutcomes(results, {"accounts-me": ["GET /api/me"]})
    state = start("accounts-me", "GET /api/me", ("shadow", 100), 0.0, BASE)(FlagState())
    outcomes.follow(state)

    results.count("GET /api/me", "matches")
    results.count("GET /api/me", "matches")
    results.count("GET /api/me", "candidate_errors")

    snapshot = outcomes.snapshot()["accounts-me"]
    assert (snapshot["compared"], snapshot["mismatches"]) == (3, 1)


# -- the controller -------------------------------------------------------------------------------


class _Reports:
    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []

    async def read_all(self) -> list[dict[str, Any]]:
        return self.reports


def _worker_report(step_id: str, *, new_errors: int, new_ms: float) -> dict[str, Any]:
    return {
        "rollouts": {
            FLAG: {
                "step_id": step_id,
                "legacy": {"requests": 200, "errors": 0, "durations": [0.005] * 200},
                "new": {"requests": 200, "errors": new_errors, "durations": [new_ms / 1000] * 200},
            }
        }
    }


async def _settle() -> None:
    """Let the memory store's watchers deliver the latest state to every runtime."""
    for _ in range(10):
        await asyncio.sleep(0)


async def _controller(
    storage: MemoryStorage, reports: _Reports, name: str
) -> tuple[FlagRuntime, RolloutController]:
    flags = FlagRuntime(defaults={FLAG: BASE}, store=FlagStore(storage))
    controller = RolloutController(
        flags,
        reports,  # type: ignore[arg-type]
        {FLAG: RolloutSettings(steps=(10, 50, 100), hold=30, interval=1, min_requests=100)},
        {FLAG: BASE},
    )
    controller.holder = name
    flags.listeners.append(controller.follow)
    await flags.start()
    return flags, controller


@pytest.mark.anyio
async def test_the_lease_holder_advances_after_the_hold_and_rolls_back_on_a_breach() -> None:
    storage, reports = MemoryStorage(), _Reports()
    flags, leader = await _controller(storage, reports, "host-a:1")
    other, follower = await _controller(storage, reports, "host-b:2")
    # Each process is told of the steps it decided itself (what its metrics count).
    decided: list[tuple[str, ...]] = []
    leader.observers.append(lambda *decision: decided.append(("a", *decision)))
    follower.observers.append(lambda *decision: decided.append(("b", *decision)))
    try:
        await flags.update(start(FLAG, "GET /api/books", (10, 50, 100), 0.0, BASE), actor="t")
        step_id = flags.state.rollouts[FLAG].step_id
        reports.reports = [_worker_report(step_id, new_errors=0, new_ms=5)]

        await _settle()
        await leader.decide(10.0)  # healthy, but the step has held 10 s of 30
        await _settle()
        await follower.decide(11.0)  # the lease is host-a's: nothing
        assert flags.state.rollouts[FLAG].step == 0
        assert flags.state.rollouts[FLAG].lease_holder == "host-a:1"
        assert flags.state.rollouts[FLAG].last_verdict["status"] == "healthy"

        await _settle()
        await leader.decide(31.0)
        rollout = flags.state.rollouts[FLAG]
        assert (rollout.step, flags.state.flags[FLAG].percentage) == (1, 50)

        reports.reports = [_worker_report(rollout.step_id, new_errors=80, new_ms=5)]
        # host-a is gone: its lease (3 intervals) has expired, host-b takes over and rolls back.
        await _settle()
        await follower.decide(40.0)
        await _settle()
        rollout = flags.state.rollouts[FLAG]
        assert rollout.status == "rolled-back"
        assert rollout.reason.startswith("error rate: new 40.0% vs legacy 0.0%")
        assert flags.state.flags[FLAG].mode == "legacy"  # every process follows
        assert decided == [("a", FLAG, "advance", "healthy"), ("b", FLAG, "rollback", "error_rate")]
    finally:
        await flags.stop()
        await other.stop()


@pytest.mark.anyio
async def test_reaching_the_last_step_is_decided_as_complete() -> None:
    storage, reports = MemoryStorage(), _Reports()
    flags, leader = await _controller(storage, reports, "host-a:1")
    decided: list[tuple[str, ...]] = []
    leader.observers.append(lambda *decision: decided.append(decision))
    try:
        await flags.update(start(FLAG, "GET /api/books", (50, 100), 0.0, BASE), actor="t")
        reports.reports = [
            _worker_report(flags.state.rollouts[FLAG].step_id, new_errors=0, new_ms=5)
        ]
        await _settle()
        await leader.decide(31.0)
        await _settle()
        assert flags.state.rollouts[FLAG].status == "completed"
        assert decided == [(FLAG, "complete", "healthy")]
        await leader.decide(62.0)  # a completed rollout is not decided again
        assert decided == [(FLAG, "complete", "healthy")]
    finally:
        await flags.stop()


@pytest.mark.anyio
async def test_a_reload_that_brings_the_first_plan_starts_the_analysis_loop() -> None:
    """A gateway started with no flagged route analyses nothing; a reload that adds one (its
    plan handed over by ``reconfigure``) starts the loop, at the new plan's interval."""
    storage, reports = MemoryStorage(), _Reports()
    flags = FlagRuntime(defaults={FLAG: BASE}, store=FlagStore(storage))
    controller = RolloutController(flags, reports, {}, {})  # type: ignore[arg-type]
    flags.listeners.append(controller.follow)
    await flags.start()
    try:
        async with controller:
            await flags.update(start(FLAG, "GET /api/books", (10, 100), 0.0, BASE), actor="t")
            plan = RolloutSettings(steps=(10, 100), hold=30, interval=0.01, min_requests=100)
            controller.reconfigure({FLAG: plan}, {FLAG: BASE})
            async with asyncio.timeout(30):
                while flags.state.rollouts[FLAG].last_verdict is None:
                    await asyncio.sleep(0.01)
            verdict = flags.state.rollouts[FLAG].last_verdict
            assert verdict is not None
            assert "each side needs 100" in verdict["reason"]
    finally:
        await flags.stop()
