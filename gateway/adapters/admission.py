"""Bounded admission to the legacy app's threads or worker processes, queued on the event loop.

A request that finds every thread (or worker) busy waits here, on the loop, and a finishing one
hands its slot to the next waiter through the loop. That trip is on purpose: the loop then runs
between one legacy request and the next, which keeps it responsive when views burn CPU (see
``gateway.adapters.legacy._run_and_release`` for what a shortcut cost).

::

    admission = Admission(8)
    if not await admission.acquire(loop, 5.0):   # waited 5 s for a free worker
        ...                                     # answer 503
    admission.release()                         # from any thread, once the worker is free
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading


class Admission:
    """Counts busy workers; waiters queue on the event loop.

    Releasing is free while nobody waits (no event-loop wake-up on the common path); a waiting
    request is handed the slot directly.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._busy = 0
        #: Requests that waited for a worker, for the metrics (only the event loop counts).
        self.waits = 0
        self._lock = threading.Lock()
        self._waiters: collections.deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = (
            collections.deque()
        )

    @property
    def busy(self) -> int:
        return self._busy

    async def acquire(self, loop: asyncio.AbstractEventLoop, wait: float) -> bool:
        """Take a slot, waiting (on ``loop``, the running one) at most ``wait`` s."""
        with self._lock:
            if self._busy < self._limit:
                self._busy += 1
                return True
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, future))
        self.waits += 1
        try:
            await asyncio.wait_for(future, wait)
        except TimeoutError:
            # Already handed a slot? Then _grant sees the cancelled future and passes it on.
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove((loop, future))
            return False
        return True

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                loop, future = self._waiters.popleft()
                loop.call_soon_threadsafe(self._grant, future)
                return
            self._busy -= 1

    def _grant(self, future: asyncio.Future[None]) -> None:
        if future.done():
            self.release()
        else:
            future.set_result(None)
