"""Worker reports: each worker process publishes what only it knows, so any process can show it.

Shadow results and circuit breakers live in the worker that served the requests. Every second
(when something changed, and at least every ``HEARTBEAT`` seconds) a worker publishes its report
next to the flags: a JSON file per worker in ``<flags file folder>/reports/`` for the file store,
a key per worker with an expiry for the Redis store. The admin API and ``gateway shadow report``
read every fresh report and add them up; a worker that stops removes its own report, and one
that died is left out once its report is older than ``STALE_AFTER`` seconds. With the memory
flag store nothing is published: each worker reports only itself::

    store = create_report_store(settings.flags)
    publisher = ReportPublisher(store, build=lambda: {"shadow": results.snapshot()})
    await publisher.start()
    reports = await store.read()          # fresh reports from every worker
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio
import structlog

from gateway.settings import FlagsSettings
from gateway.shadow.results import merge_snapshots

log = structlog.get_logger("gateway.reports")

#: A report older than this comes from a worker that is gone.
STALE_AFTER = 30.0
#: Publish at least this often, even with nothing new, so a live worker never looks gone.
HEARTBEAT = 10.0

Report = dict[str, Any]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class ReportStore(Protocol):
    description: str

    async def publish(self, worker: str, report: Report) -> None: ...

    async def remove(self, worker: str) -> None: ...

    async def read(self) -> list[Report]: ...

    async def close(self) -> None: ...


class NoReportStore:
    """For the memory flag store: nothing is shared between processes."""

    description = "this worker only (memory flag store)"

    async def publish(self, worker: str, report: Report) -> None:
        return None

    async def remove(self, worker: str) -> None:
        return None

    async def read(self) -> list[Report]:
        return []

    async def close(self) -> None:
        return None


class FileReportStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.description = f"file {directory}"

    def _path(self, worker: str) -> Path:
        return self.directory / f"{worker.replace(':', '-').replace('/', '_')}.json"

    async def publish(self, worker: str, report: Report) -> None:
        await asyncio.to_thread(self._write, self._path(worker), json.dumps(report).encode())

    def _write(self, path: Path, payload: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(payload)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    async def remove(self, worker: str) -> None:
        self._path(worker).unlink(missing_ok=True)

    async def read(self) -> list[Report]:
        return await asyncio.to_thread(self._read)

    def _read(self) -> list[Report]:
        reports = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                report = json.loads(path.read_bytes())
            except (OSError, ValueError):
                continue  # removed or half-written meanwhile: the next read has it
            if isinstance(report, dict) and _fresh(report):
                reports.append(report)
        return reports

    async def close(self) -> None:
        return None


class RedisReportStore:
    def __init__(self, url: str, prefix: str, *, timeout: float = 1.0) -> None:
        self._prefix = prefix
        self._redis = redis.asyncio.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout
        )
        self.description = f"redis {prefix}*"

    async def publish(self, worker: str, report: Report) -> None:
        await self._redis.set(self._prefix + worker, json.dumps(report), ex=int(STALE_AFTER))

    async def remove(self, worker: str) -> None:
        await self._redis.delete(self._prefix + worker)

    async def read(self) -> list[Report]:
        keys = [key async for key in self._redis.scan_iter(match=self._prefix + "*", count=100)]
        if not keys:
            return []
        reports = []
        for raw in await self._redis.mget(keys):
            if raw is None:
                continue
            with contextlib.suppress(ValueError):
                report = json.loads(raw)
                if isinstance(report, dict) and _fresh(report):
                    reports.append(report)
        return reports

    async def close(self) -> None:
        await self._redis.aclose()


def create_report_store(settings: FlagsSettings) -> ReportStore:
    """Reports go where the flags are: that is what every worker and host already shares."""
    if settings.store == "file":
        return FileReportStore(settings.file.parent / "reports")
    if settings.store == "redis":
        return RedisReportStore(settings.redis_url, f"{settings.redis_key}:reports:")
    return NoReportStore()


def _fresh(report: Report) -> bool:
    updated = report.get("updated")
    return isinstance(updated, int | float) and time.time() - updated < STALE_AFTER


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
        self._failing = False

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
                    if not self._failing:
                        log.warning(
                            "reports.publish_failed", store=self.store.description, error=str(exc)
                        )
                    self._failing = True
                else:
                    if self._failing:
                        log.info("reports.publish_recovered", store=self.store.description)
                    self._failing = False
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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.store.remove(self.worker), timeout=2.0)
        with contextlib.suppress(Exception):
            await self.store.close()


_SEVERITY = {"closed": 0, "half-open": 1, "open": 2}


def combine_reports(reports: list[Report], *, keep: int = 100) -> Report:
    """Several workers' reports as one: shadow results added up, each breaker's worst state."""
    breakers: dict[str, Report] = {}
    for report in reports:
        for route, view in report.get("breakers", {}).items():
            entry = breakers.setdefault(route, {"state": "closed", "workers": {}})
            entry["workers"][report.get("worker", "?")] = view
            if _SEVERITY.get(view.get("state"), 0) > _SEVERITY[entry["state"]]:
                entry["state"] = view["state"]
    return {
        "workers": sorted(str(report.get("worker", "?")) for report in reports),
        "shadow": merge_snapshots([report.get("shadow", {}) for report in reports], keep=keep),
        "breakers": dict(sorted(breakers.items())),
    }
