"""One CPU per worker process, for ``gateway serve`` with ``server.pin_workers``.

A gateway worker runs its event loop and its legacy threads under one GIL. Free to run on every
core, those threads hand the GIL from core to core, and the workers' threads and the kernel's
network work crowd each other: ``bench/workers_bench.py`` measured ``--workers 2`` on two cores
at 7,739 legacy requests/s unpinned and 9,051 with each worker on a core of its own (README,
"Several workers"). So the supervisor hands out the CPUs it may use, one per worker: a worker
claims the first slot whose owner is gone (a worker that died, or none yet) and pins itself to
that slot's CPU, so a replacement takes the CPU its predecessor left. With more workers than
CPUs, the slots go round the CPUs again::

    slots = CpuSlots(workers=4)           # in the supervisor, before the workers start
    cpu = slots.claim()                   # in each worker: pinned to that CPU now
    cpu = pin_this_process()              # one worker (no supervisor): the same, for itself

One worker is pinned as well: its event loop and legacy threads then hand the GIL to each other
on one core (``bench/workers_bench.py --workers 1`` measured the legacy route at 5,568 requests/s
pinned against 4,631 free on both cores; README, "Several workers").

Written here rather than taken from a library: uvicorn and gunicorn have no CPU affinity, and
``os.sched_setaffinity`` with a shared array of owners is all it takes.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from multiprocessing.sharedctypes import SynchronizedArray


class CpuSlots:
    """``workers`` slots over the CPUs this process may use, shared with spawned workers."""

    def __init__(self, workers: int) -> None:
        self.cpus = tuple(sorted(os.sched_getaffinity(0)))
        #: The pid that holds each slot (0: never held). A spawned worker inherits the array
        #: when it starts (the supervisor hands it over with the app factory).
        self._owners: SynchronizedArray[int] = multiprocessing.get_context("spawn").Array(
            "i", workers
        )

    def claim(self) -> int:
        """Take a free slot for this process, pin this process to its CPU, and return it."""
        pid = os.getpid()
        with self._owners.get_lock():
            owners = self._owners[:]
            free = [slot for slot, owner in enumerate(owners) if not _alive(owner)]
            # None free: a predecessor not yet reaped; share a CPU rather than fail to start.
            slot = free[0] if free else pid % len(owners)
            self._owners[slot] = pid
        cpu = self.cpus[slot % len(self.cpus)]
        _pin_threads(cpu)
        return cpu


def pin_this_process() -> int:
    """Pin this process to the first CPU it may use (the first slot's, as ``CpuSlots`` hands
    them out), and return it."""
    cpu = min(os.sched_getaffinity(0))
    _pin_threads(cpu)
    return cpu


def _pin_threads(cpu: int) -> None:
    """Pin every thread this process has to ``cpu`` (an affinity belongs to a thread, and the
    log flusher may already run); a thread starts with its creator's, so every thread it starts
    later runs there too."""
    for task in os.listdir("/proc/self/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(task), {cpu})


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False  # gone; or another user's process holds that pid now, not our worker
    return True
