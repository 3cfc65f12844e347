"""Takes a reading of the metrics registry every few seconds, in each worker, into a ``History``.

An async context manager, entered with the gateway's other components at start-up::

    sampler = Sampler(registry, history, interval=5.0)
    async with sampler:
        ...                                  # history.window(read_registry(registry), 300)

Under ``gateway serve --workers N`` each worker samples; in the client's multiprocess mode every
worker reads the same totals, so whichever worker answers the dashboard shows the same numbers.
"""

from __future__ import annotations

import anyio.to_thread
import structlog

from gateway.dashboard.traffic import Collectable, History, read_registry
from gateway.storage.tasks import PeriodicTask

log = structlog.get_logger("gateway.dashboard")


class Sampler:
    def __init__(self, registry: Collectable, history: History, *, interval: float = 5.0) -> None:
        self.registry = registry
        self.history = history
        # A broken collector must not end the sampling for good: a failed reading is logged.
        self._sampling = PeriodicTask(
            interval, self.sample, logger=log, failure_event="dashboard.sample_failed"
        )

    async def sample(self) -> None:
        # A multiprocess registry reads every worker's files: off the event loop. The history
        # itself is only touched here, on the loop.
        self.history.add(await anyio.to_thread.run_sync(read_registry, self.registry))

    async def __aenter__(self) -> Sampler:
        await self.sample()  # the baseline: every window starts at the gateway's start
        self._sampling.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._sampling.stop()
