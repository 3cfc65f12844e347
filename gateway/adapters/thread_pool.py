"""The legacy adapter's worker threads: plain threads fed from one queue.

Written here rather than using ``concurrent.futures.ThreadPoolExecutor``: its ``submit`` builds a
``Future`` and a work item and takes a lock and a semaphore on every call, for a result the
adapter never reads (each request reports through its own response channel), and the adapter's
admission (``gateway.adapters.admission``, on the event loop) already bounds the calls in flight
to the number of threads. A queue and the threads are all that is left;
``bench/ablation_bench.py --baseline`` measured the difference (README, "Performance round 2").

::

    pool = ThreadPool(8, "legacy")
    pool.submit(run, environ, channel)    # runs in one of the threads
    pool.close()                          # threads finish what they run, then end
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("gateway.legacy")

_Work = tuple[Callable[..., object], tuple[Any, ...]]


class ThreadPool:
    def __init__(self, threads: int, name: str) -> None:
        self._limit = threads
        self._name = name
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    @property
    def threads(self) -> int:
        """Threads started so far (they start as work first arrives, up to the limit)."""
        return len(self._threads)

    def submit(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` in a thread; what it raises is logged (callers handle their own
        errors: the adapter's ``_run_and_release`` reports through the response channel)."""
        if self._closed:
            raise RuntimeError("cannot submit work after shutdown")
        self._queue.put((fn, args))
        if len(self._threads) < self._limit:
            self._start_thread()

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
        while (work := self._queue.get()) is not None:
            fn, args = work
            try:
                fn(*args)
            except BaseException:
                log.exception("legacy.thread_work_failed")
            # Drop the references now: the thread may wait a long time for its next work.
            del work, fn, args
