"""Storage in this process's memory: flags change only through this process (the admin API),
and everything is lost on restart.

For tests and single-process experiments; ``file`` or ``redis`` for anything shared. Reports
stay in the process too, so each worker reports only itself::

    storage = MemoryStorage()
    await storage.update_flags(lambda state: state.model_copy(update={"kill_switch": True}))
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.flags.model import FlagState
from gateway.storage import Storage
from gateway.storage.documents import OnChange, Report, apply_change, deliver, is_fresh


class MemoryStorage(Storage):
    description = "memory"
    reports_description = "this process only (memory store)"

    def __init__(self) -> None:
        super().__init__()
        self._state: FlagState | None = None
        self._changed = asyncio.Condition()
        self._reports: dict[str, Report] = {}

    async def load_flags(self) -> FlagState | None:
        return self._state

    async def update_flags(self, change: Callable[[FlagState], FlagState]) -> FlagState:
        _, self._state = apply_change(self._state or FlagState(), change)
        async with self._changed:
            self._changed.notify_all()
        return self._state

    async def watch_flags(self, on_change: OnChange) -> None:
        seen: FlagState | None = None
        while True:
            async with self._changed:
                while self._state is seen:
                    await self._changed.wait()
                seen = self._state
            if seen is not None:
                await deliver(on_change, seen, store=self.description)

    async def publish_report(self, worker: str, report: Report) -> None:
        self._reports[worker] = report

    async def remove_report(self, worker: str) -> None:
        self._reports.pop(worker, None)

    async def read_reports(self) -> list[Report]:
        return [report for report in self._reports.values() if is_fresh(report)]

    async def close(self) -> None:
        """Nothing to release."""
