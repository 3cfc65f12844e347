"""The legacy adapter's worker threads: plain threads fed from one queue, which is also where
requests wait for a free thread.

Written here rather than using ``concurrent.futures.ThreadPoolExecutor``: its ``submit`` builds a
``Future`` and a work item and takes a lock and a semaphore on every call, for a result the
adapter never reads (each request reports through its own response channel). And the queue is
the admission's waiting room: when every thread is busy, a request's work waits in the queue,
and the thread that finishes one request takes the next straight from it. Before, a waiting
request waited on the event loop for a slot that the finishing thread handed back through the
loop (one more cross-thread wake-up and a timer per request whenever the pool was full, which
is exactly when it matters); ``bench/ablation_bench.py --baseline`` measured both (README,
"Performance round 2").

::

    pool = ThreadPool(8, "legacy")
    ticket = pool.submit(run, environ, channel)   # runs in one of the threads
    ticket.waiting          # True: every thread was busy, the work is queued behind others
    ticket.cancel()         # True: it had not started, and now never will (the caller's 503)
    ticket.started_at       # time.monotonic() when a thread took it
    pool.close()            # threads finish what they run and what is queued, then end
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("gateway.legacy")

_QUEUED, _RUNNING, _CANCELLED = 0, 1, 2


class Ticket:
    """One piece of submitted work, as the submitter sees it."""

    __slots__ = ("_pool", "_state", "args", "fn", "started_at", "waiting")

    def __init__(
        self, pool: ThreadPool, fn: Callable[..., object], args: tuple[Any, ...], waiting: bool
    ) -> None:
        self._pool = pool
        self._state = _QUEUED
        self.fn = fn
        self.args = args
        #: Whether every thread was busy when it was submitted (it waits behind other work).
        self.waiting = waiting
        #: ``time.monotonic()`` when a thread started it; ``None`` until then.
        self.started_at: float | None = None

    def cancel(self) -> bool:
        """Withdraw work that no thread has started; ``False`` when one already has."""
        pool = self._pool
        with pool._lock:
            if self._state != _QUEUED:
                return False
            self._state = _CANCELLED
            pool._queued -= 1
        self.fn = self.args = None  # type: ignore[assignment]  # a thread will only skip it
        return True


class ThreadPool:
    def __init__(self, threads: int, name: str) -> None:
        self._limit = threads
        self._name = name
        self._queue: queue.SimpleQueue[Ticket | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        #: Guards the counts, the tickets' states and the thread list.
        self._lock = threading.Lock()
        self._closed = False
        self._queued = 0
        self._running = 0
        #: Work submitted while every thread was busy, since the start (``gateway.metrics``).
        self.waits = 0

    @property
    def threads(self) -> int:
        """Threads started so far (they start as work first arrives, up to the limit)."""
        return len(self._threads)

    @property
    def busy(self) -> int:
        """Threads running work now."""
        return self._running

    def submit(self, fn: Callable[..., object], *args: Any) -> Ticket:
        """Run ``fn(*args)`` in a thread, at once or when one is free; what it raises is logged
        (callers handle their own errors: the adapter's ``_run_wsgi`` reports through the
        response channel)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit work after shutdown")
            # Each queued ticket that is not cancelled has a thread of its own coming, so the
            # work waits exactly when the running and the queued fill every thread.
            waiting = self._running + self._queued >= self._limit
            ticket = Ticket(self, fn, args, waiting)
            self._queued += 1
            if waiting:
                self.waits += 1
            start = len(self._threads) < self._limit
        self._queue.put(ticket)
        if start:
            self._start_thread()
        return ticket

    def close(self) -> None:
        """Take no more work; each thread ends once the work queued before is done."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)

    def _start_thread(self) -> None:
        with self._lock:
            if len(self._threads) >= self._limit:
                return
            # Daemon threads, so a pool nobody closed (an app built but never served) does not
            # keep the interpreter alive; a served gateway closes it in its lifespan shutdown,
            # after the server has let requests in flight finish.
            thread = threading.Thread(
                target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
            if self._closed:
                # Started for work submitted just before close(), which queued an end for each
                # thread it knew of: this one needs its own (after that work, in the queue).
                self._queue.put(None)

    def _work(self) -> None:
        lock = self._lock
        while (ticket := self._queue.get()) is not None:
            with lock:
                if ticket._state != _QUEUED:
                    continue  # cancelled: its request was answered 503 meanwhile
                ticket._state = _RUNNING
                ticket.started_at = time.monotonic()
                self._queued -= 1
                self._running += 1
            fn, args = ticket.fn, ticket.args
            try:
                fn(*args)
            except BaseException:
                log.exception("legacy.thread_work_failed")
            finally:
                with lock:
                    self._running -= 1
            # Drop the references now: the thread may wait a long time for its next work.
            del ticket, fn, args
