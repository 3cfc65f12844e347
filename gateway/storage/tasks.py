"""Background tasks: stopping one that talks to the storage, and running a step every few seconds.

Stopping a task (the flag watcher, the report publisher)::

    async with asyncio.timeout(2.0):     # bound it: TimeoutError if it is still running
        await cancel_and_wait(watcher)

A single ``task.cancel()`` is not enough on Python 3.11: ``asyncio.wait_for``, which redis-py
uses to send every command, returns its inner call's result instead of raising when the
cancellation lands just as that call completes (CPython gh-86296, fixed in 3.12 by rebuilding
``wait_for`` on ``asyncio.timeout``). The cancellation is lost and the task runs on, so a shut-down
that waits for it never ends. Like an anyio cancel scope, this re-delivers the cancellation until
the task ends.

Running a step every ``interval`` seconds until shut-down (the metrics flusher, the dashboard
sampler, the rollout controller)::

    sampling = PeriodicTask(5.0, sampler.sample, logger=log, failure_event="sampler.failed")
    async with sampling:         # the first reading after 5 s; a failed one is logged, not fatal
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

#: How often the cancellation is re-delivered while the task is still running.
_REDELIVER_EVERY = 0.05


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again while it runs on."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_REDELIVER_EVERY)


#: A periodic step: a plain function or a coroutine function.
Step = Callable[[], Awaitable[None] | None]


class PeriodicTask:
    """Runs ``step`` in a task of its own every ``interval`` seconds, the first time one interval
    after ``start()``, until ``stop()`` cancels it and waits for it to end.

    A failing step is logged as ``failure_event`` (with its traceback) and the next one runs on
    time: one broken round must not end the loop for good. ``interval`` may be a function, read
    before each sleep, so a config reload changes the pace from the next round on.
    ``stop_timeout`` bounds the wait on shut-down (``None``: wait as long as the step takes).
    """

    def __init__(
        self,
        interval: float | Callable[[], float],
        step: Step,
        *,
        logger: structlog.typing.FilteringBoundLogger,
        failure_event: str,
        stop_timeout: float | None = None,
    ) -> None:
        self._interval = interval if callable(interval) else lambda: interval
        self._step = step
        self._log = logger
        self._failure_event = failure_event
        self._stop_timeout = stop_timeout
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._stop_timeout):
                    await cancel_and_wait(task)

    async def __aenter__(self) -> PeriodicTask:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval())
            try:
                result = self._step()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self._log.exception(self._failure_event)
