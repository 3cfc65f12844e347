"""``PeriodicTask``: the loop behind the metrics flusher, the dashboard sampler and the rollout
controller. Intervals are 0 or an hour, so nothing here depends on the machine's speed."""

from __future__ import annotations

import asyncio

import pytest
import structlog
from structlog.testing import capture_logs

from gateway.storage.tasks import PeriodicTask

log = structlog.get_logger("tests.periodic")


@pytest.mark.anyio
async def test_a_failing_step_is_logged_and_the_next_one_runs() -> None:
    calls = 0
    third = asyncio.Event()

    def step() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            third.set()
        if calls == 1:
            raise RuntimeError("collector broke")

    with capture_logs() as captured:
        async with PeriodicTask(0, step, logger=log, failure_event="test.step_failed"):
            async with asyncio.timeout(5):
                await third.wait()

    failures = [e for e in captured if e["event"] == "test.step_failed"]
    assert len(failures) == 1
    assert failures[0]["log_level"] == "error"
    assert failures[0]["exc_info"] is True  # the traceback goes with it


@pytest.mark.anyio
async def test_a_coroutine_step_is_awaited() -> None:
    ran = asyncio.Event()

    async def step() -> None:
        await asyncio.sleep(0)
        ran.set()

    async with PeriodicTask(0, step, logger=log, failure_event="test.step_failed"):
        async with asyncio.timeout(5):
            await ran.wait()


@pytest.mark.anyio
async def test_exit_cancels_a_running_step_and_no_step_runs_after() -> None:
    started, calls = asyncio.Event(), 0
    cancelled = False

    async def step() -> None:
        nonlocal calls, cancelled
        calls += 1
        started.set()
        try:
            await asyncio.Event().wait()  # never set: only a cancellation ends it
        except asyncio.CancelledError:
            cancelled = True
            raise

    async with PeriodicTask(0, step, logger=log, failure_event="test.step_failed"):
        async with asyncio.timeout(5):
            await started.wait()
    assert cancelled
    for _ in range(5):
        await asyncio.sleep(0)
    assert calls == 1


@pytest.mark.anyio
async def test_each_step_waits_one_interval_read_before_it() -> None:
    events: list[str] = []
    done = asyncio.Event()
    intervals = iter([0.0, 0.0, 3600.0])  # the third read: a reload slowed the pace

    def interval() -> float:
        events.append("sleep")
        return next(intervals)

    def step() -> None:
        events.append("step")
        if events.count("step") == 2:
            done.set()

    async with PeriodicTask(interval, step, logger=log, failure_event="test.step_failed"):
        async with asyncio.timeout(5):
            await done.wait()
        for _ in range(5):
            await asyncio.sleep(0)
    assert events == ["sleep", "step", "sleep", "step", "sleep"]


@pytest.mark.anyio
async def test_no_step_runs_before_the_first_interval() -> None:
    calls = 0

    def step() -> None:
        nonlocal calls
        calls += 1

    async with PeriodicTask(3600, step, logger=log, failure_event="test.step_failed"):
        for _ in range(5):
            await asyncio.sleep(0)
    assert calls == 0
