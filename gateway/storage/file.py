"""Storage in local files, shared by every worker process on one host.

The flag state is one JSON file; each worker's report is a JSON file of its own in a folder
next to it. Every write is atomic (``gateway.storage.atomic``), so readers never see a
half-written file. Flag writers take an exclusive ``flock`` on a sibling ``.lock`` file for the
whole read-modify-write, so two processes never lose each other's update. Flag watchers poll the
file's ``stat`` (cheap) and re-read it when that changed, and every 5 s regardless::

    storage = FileStorage(Path("var/flags.json"))          # reports in var/reports/
    await storage.update_flags(lambda state: state.model_copy(update={"kill_switch": True}))
    await storage.publish_report("web-1:4242", {"worker": "web-1:4242", "updated": time.time()})

``flock`` is reliable on local file systems only; across hosts, use ``RedisStorage``.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

from gateway.errors import StoreUnavailable
from gateway.flags.model import FlagState
from gateway.storage import Storage
from gateway.storage.atomic import DEFAULT_MODE, write_atomically
from gateway.storage.documents import (
    OnChange,
    Report,
    apply_change,
    deliver,
    dump_report,
    parse_report,
    parse_state,
)
from gateway.storage.health import StoreHealth

#: A writer holds the lock for one small read and write; waiting longer means something is stuck.
_LOCK_TIMEOUT = 5.0
_LOCK_POLL = 0.005
#: Watchers re-read the file this often even when its stat looks unchanged.
_REREAD_INTERVAL = 5.0


class FileStorage(Storage):
    """The flag state in ``flag_file``, worker reports in ``reports`` (by default a ``reports``
    folder next to the flag file); see the module docstring."""

    def __init__(
        self, flag_file: Path, *, reports: Path | None = None, poll_interval: float = 0.25
    ) -> None:
        super().__init__()
        self.flag_file = flag_file
        self.reports = reports if reports is not None else flag_file.parent / "reports"
        self.poll_interval = poll_interval
        self.description = f"file:{flag_file}"
        self.reports_description = f"file:{self.reports}"
        self._lock_path = flag_file.with_suffix(flag_file.suffix + ".lock")

    # -- the flag state ----------------------------------------------------------------------

    async def load_flags(self) -> FlagState | None:
        return await asyncio.to_thread(self._read_flags)

    async def update_flags(self, change: Callable[[FlagState], FlagState]) -> FlagState:
        """Replace the state with ``change(current)``; ``change`` runs in a worker thread while
        the lock is held, so it must be quick and must not touch the event loop."""
        return await asyncio.to_thread(self._update_flags, change)

    async def watch_flags(self, on_change: OnChange) -> None:
        """Deliver the state found at start (so nothing changed since ``load_flags`` is
        missed), then every state that differs from the last one delivered. Never raises; while
        the file is unreadable it keeps the last state and warns every 30 s."""
        health = StoreHealth(self.description, subject="flags", action="keeping the last state")
        seen: tuple[int, int, int] | None = None
        delivered: FlagState | None = None
        reread_at = 0.0
        while True:
            try:
                signature = await asyncio.to_thread(self._signature)
                if signature is None:
                    if delivered is not None:
                        # The state vanished (deleted, or a writer outside this storage is
                        # mid-way): keep serving the last one rather than resetting every flag.
                        raise StoreUnavailable(f"{self.flag_file}: file is missing")
                    seen = None  # nothing stored yet: the runtime's defaults apply
                elif signature != seen or time.monotonic() >= reread_at:
                    # The periodic re-read is insurance: a freed inode number can be reused by
                    # the next write, and mtime is only as fine as the kernel's clock tick, so two
                    # quick same-size writes could leave the same signature.
                    state = await self.load_flags()
                    # Recorded only after a good read, so an invalid file is re-read until fixed.
                    seen = signature
                    reread_at = time.monotonic() + _REREAD_INTERVAL
                    if state is not None and state != delivered:
                        delivered = state
                        await deliver(on_change, state, store=self.description)
                health.recovered()
            except StoreUnavailable as exc:
                health.failed(str(exc))
            except Exception as exc:  # the contract: a watcher never dies, it reports and retries
                health.failed(f"{self.flag_file}: {exc!r}")
            await asyncio.sleep(self.poll_interval)

    # -- worker reports ----------------------------------------------------------------------

    async def publish_report(self, worker: str, report: Report) -> None:
        await asyncio.to_thread(write_atomically, self._report_path(worker), dump_report(report))

    async def remove_report(self, worker: str) -> None:
        await asyncio.to_thread(self._report_path(worker).unlink, missing_ok=True)

    async def read_reports(self) -> list[Report]:
        return await asyncio.to_thread(self._read_reports)

    async def close(self) -> None:
        """Nothing to release: every operation opens and closes its own files."""

    # -- the blocking halves, run in worker threads ------------------------------------------

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            stat = self.flag_file.stat()
        except FileNotFoundError:
            return None
        # The inode changes on every os.replace, so even a same-size write within the file
        # system's timestamp granularity is noticed.
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def _read_flags(self) -> FlagState | None:
        try:
            raw = self.flag_file.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"{self.flag_file}: cannot read ({exc.strerror})") from exc
        return parse_state(raw, source=str(self.flag_file))

    def _update_flags(self, change: Callable[[FlagState], FlagState]) -> FlagState:
        try:
            self.flag_file.parent.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, DEFAULT_MODE)
        except OSError as exc:
            raise StoreUnavailable(f"{self._lock_path}: cannot open ({exc.strerror})") from exc
        try:
            self._acquire(lock_fd)
            # Reads under the lock, and an unreadable file fails the update instead of being
            # replaced by change(FlagState()), which would silently reset every other flag.
            current = self._read_flags() or FlagState()
            payload, new_state = apply_change(current, change, indent=2)
            write_atomically(self.flag_file, payload.encode())
            return new_state
        finally:
            os.close(lock_fd)  # closing the descriptor releases the flock

    def _acquire(self, lock_fd: int) -> None:
        # Non-blocking attempts with a deadline: a blocking flock in a worker thread cannot be
        # cancelled and would hang the caller for as long as a stuck writer holds the lock.
        deadline = time.monotonic() + _LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise StoreUnavailable(f"{self._lock_path}: cannot lock ({exc})") from exc
            if time.monotonic() >= deadline:
                raise StoreUnavailable(
                    f"{self._lock_path}: another writer held the lock for {_LOCK_TIMEOUT:g} s"
                )
            time.sleep(_LOCK_POLL)

    def _report_path(self, worker: str) -> Path:
        # A worker id is host:pid; ':' and '/' would not make one plain file name.
        return self.reports / f"{worker.replace(':', '-').replace('/', '_')}.json"

    def _read_reports(self) -> list[Report]:
        reports = []
        # A write in progress is a '.tmp' file, which the pattern leaves out.
        for path in sorted(self.reports.glob("*.json")):
            try:
                raw = path.read_bytes()
            except OSError:
                continue  # removed meanwhile: the next read has the rest
            report = parse_report(raw)
            if report is not None:
                reports.append(report)
        return reports
