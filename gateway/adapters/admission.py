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
        self._waiters: collections.deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]]] = (
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
            future: asyncio.Future[bool] = loop.create_future()
            self._waiters.append((loop, future))
        self.waits += 1
        # A timer that answers the future False, not asyncio.wait_for: on Python 3.11 that
        # builds a second future, a done-callback and the same timer, about 2 us more for each
        # request that waits (and requests wait whenever the pool is saturated), and when the
        # waiting task was cancelled just after its grant it returned the grant and lost the
        # cancellation (tests/test_admission.py).
        timer = loop.call_later(wait, _give_up, future)
        try:
            granted = await future
            if granted:
                # Let the loop first run what is already due (the responses of the requests
                # that just finished) before this one takes a thread that competes with it for
                # the GIL: without this yield the pool's p99 at saturation rose by 0.2 to 0.3 ms
                # (bench/ablation_bench.py --path /legacy/hello, 14 rounds of 14).
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.result():
                # Granted, then cancelled (its client left) before it could use the slot.
                self.release()
            raise
        finally:
            timer.cancel()
        if not granted:
            # Handed a slot meanwhile? Then _grant finds the future done and passes it on.
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove((loop, future))
        return granted

    def release(self) -> None:
        with self._lock:
            if self._waiters:
                loop, future = self._waiters.popleft()
                loop.call_soon_threadsafe(self._grant, future)
                return
            self._busy -= 1

    def _grant(self, future: asyncio.Future[bool]) -> None:
        # Done already: the waiter gave up (timed out) or was cancelled (its client left).
        if future.done():
            self.release()
        else:
            future.set_result(True)


def _give_up(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)
