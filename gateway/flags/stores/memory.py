"""A flag store in this process's memory: changes only through the admin API, lost on restart.

For tests and single-process experiments; ``file`` or ``redis`` for anything shared::

    store = MemoryFlagStore()
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable

from gateway.flags.model import FlagState
from gateway.flags.stores import OnChange


class MemoryFlagStore:
    description = "memory"

    def __init__(self) -> None:
        self._state: FlagState | None = None
        self._changed = asyncio.Condition()

    async def load(self) -> FlagState | None:
        return self._state

    async def update(self, change: Callable[[FlagState], FlagState]) -> FlagState:
        current = self._state or FlagState()
        self._state = change(current).model_copy(update={"version": current.version + 1})
        async with self._changed:
            self._changed.notify_all()
        return self._state

    async def watch(self, on_change: OnChange) -> None:
        while True:
            async with self._changed:
                await self._changed.wait()
            if self._state is not None:
                result = on_change(self._state)
                if inspect.isawaitable(result):
                    await result

    async def close(self) -> None:
        return None
