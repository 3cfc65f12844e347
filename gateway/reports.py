"""Worker reports: each worker process publishes what only it knows, so any process can show it.

Shadow results and circuit breakers live in the worker that served the requests. Every second
(when something changed, and at least every ``HEARTBEAT`` seconds) a worker publishes its report
to the same storage backend as the flags (``gateway.storage``): a JSON file per worker in
``<flags file folder>/reports/`` for the file store, a key per worker with an expiry for the
Redis store (through the worker's one Redis client), this process's memory for the memory store.
The admin API and ``gateway shadow report`` read every fresh report and add them up; a worker
that stops removes its own report, and one that died is left out once its report is older than
``STALE_AFTER`` seconds::

    reports = ReportStore(storage)        # a view over the flags' storage backend
    publisher = ReportPublisher(reports, build=lambda: {...}, version=lambda: results.version)
    await publisher.start()
    everyone = await publisher.read_all()  # this worker's report first, then every other fresh one
    await publisher.stop()                 # removes this worker's report, closes the view
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable

import structlog

from gateway.shadow.results import merge_snapshots
from gateway.storage import STALE_AFTER, Report, Storage, StorageView
from gateway.storage.health import StoreHealth
from gateway.storage.tasks import cancel_and_wait

__all__ = [
    "HEARTBEAT",
    "STALE_AFTER",
    "Report",
    "ReportPublisher",
    "ReportStore",
    "combine_reports",
    "worker_id",
]

log = structlog.get_logger("gateway.reports")

#: Publish at least this often, even with nothing new, so a live worker never looks gone.
HEARTBEAT = 10.0
#: How long a stopping worker waits for its publisher to end, and then to remove its report.
_STOP_TIMEOUT = 2.0


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class ReportStore(StorageView):
    """A view over a storage backend's worker reports; see ``Storage`` for each call's
    contract."""

    def __init__(self, storage: Storage) -> None:
        super().__init__(storage)
        self.description = storage.reports_description

    async def publish(self, worker: str, report: Report) -> None:
        await self.storage.publish_report(worker, report)

    async def remove(self, worker: str) -> None:
        await self.storage.remove_report(worker)

    async def read(self) -> list[Report]:
        return await self.storage.read_reports()


class ReportPublisher:
    """Publishes this worker's report in the background; ``build`` returns its current state
    and ``version`` tells whether anything changed since the last publication."""

    def __init__(
        self,
        store: ReportStore,
        *,
        build: Callable[[], Report],
        version: Callable[[], int],
        interval: float = 1.0,
    ) -> None:
        self.store = store
        self.worker = worker_id()
        self._build = build
        self._version = version
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        # The storage's one warning policy: a report is never worth a failed request, nor a
        # warning a second while the store is down.
        self._health = StoreHealth(
            store.description,
            subject="reports",
            action="retrying; other workers show this one as gone once its report is stale",
        )

    def report(self) -> Report:
        """This worker's report, now."""
        return {"worker": self.worker, "updated": time.time(), **self._build()}

    async def __aenter__(self) -> ReportPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        published_version, published_at = -1, 0.0
        while True:
            version, now = self._version(), time.monotonic()
            if version != published_version or now - published_at >= HEARTBEAT:
                try:
                    await self.store.publish(self.worker, self.report())
                except Exception as exc:  # a report is never worth a failed request
                    self._health.failed(str(exc) or type(exc).__name__)
                else:
                    self._health.recovered()
                    published_version, published_at = version, now
            await asyncio.sleep(self._interval)

    async def read_all(self) -> list[Report]:
        """Every live worker's report, this one's as it is now."""
        try:
            others = [r for r in await self.store.read() if r.get("worker") != self.worker]
        except Exception as exc:
            log.warning("reports.read_failed", store=self.store.description, error=str(exc))
            others = []
        return [self.report(), *others]

    async def stop(self) -> None:
        """Stop publishing, remove this worker's report, and close the report store."""
        task, self._task = self._task, None
        if task is not None:
            # Only a started publisher has a report to remove (a gateway that failed to start
            # never published one). Each step is bounded: shut-down must not hang on a store.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_STOP_TIMEOUT):
                    await cancel_and_wait(task)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_STOP_TIMEOUT):
                    await self.store.remove(self.worker)
        with contextlib.suppress(Exception):
            await self.store.close()


_SEVERITY = {"closed": 0, "half-open": 1, "open": 2}


def combine_reports(reports: list[Report], *, keep: int = 100) -> Report:
    """Several workers' reports as one: shadow results and fallbacks added up, each breaker's
    worst state."""
    breakers: dict[str, Report] = {}
    fallbacks: dict[str, int] = {}
    for report in reports:
        for route, number in report.get("fallbacks", {}).items():
            fallbacks[route] = fallbacks.get(route, 0) + int(number)
        for route, view in report.get("breakers", {}).items():
            entry = breakers.setdefault(route, {"state": "closed", "workers": {}})
            entry["workers"][report.get("worker", "?")] = view
            if _SEVERITY.get(view.get("state"), 0) > _SEVERITY[entry["state"]]:
                entry["state"] = view["state"]
    return {
        "workers": sorted(str(report.get("worker", "?")) for report in reports),
        "shadow": merge_snapshots([report.get("shadow", {}) for report in reports], keep=keep),
        "breakers": dict(sorted(breakers.items())),
        "fallbacks": dict(sorted(fallbacks.items())),
    }
