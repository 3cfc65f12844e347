"""Takes a reading of the metrics registry every few seconds, in each worker, into a ``History``.

An async context manager, entered with the gateway's other components at start-up::

    sampler = Sampler(registry, history, interval=5.0)
    async with sampler:
        ...                                  # history.window(read_registry(registry), 300)

Under ``gateway serve --workers N`` each worker samples; in the client's multiprocess mode every
worker reads the same totals, so whichever worker answers the dashboard shows the same numbers.
"""

from __future__ import annotations

import asyncio
import contextlib

import anyio.to_thread
import structlog

from gateway.dashboard.traffic import Collectable, History, read_registry
from gateway.storage.tasks import cancel_and_wait

log = structlog.get_logger("gateway.dashboard")


class Sampler:
    def __init__(self, registry: Collectable, history: History, *, interval: float = 5.0) -> None:
        self.registry = registry
        self.history = history
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def sample(self) -> None:
        # A multiprocess registry reads every worker's files: off the event loop. The history
        # itself is only touched here, on the loop.
        self.history.add(await anyio.to_thread.run_sync(read_registry, self.registry))

    async def __aenter__(self) -> Sampler:
        await self.sample()  # the baseline: every window starts at the gateway's start
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        task, self._task = self._task, None
        if task is not None:
            with contextlib.suppress(Exception):
                await cancel_and_wait(task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sample()
            except Exception:  # a broken collector must not end the sampling for good
                log.exception("dashboard.sample_failed")
