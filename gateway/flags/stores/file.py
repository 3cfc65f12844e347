"""A flag store in a local JSON file, shared by every worker process on one host.

Readers never see a half-written file: a write goes to a temporary file in the same directory
and is renamed over the old one. Writers take an exclusive ``flock`` on a sibling ``.lock`` file
for the whole read-modify-write, so two processes never lose each other's update. Watchers poll
the file's ``stat`` (cheap) and re-read it when that changed, and every 5 s regardless::

    store = FileFlagStore(Path("var/flags.json"))
    await store.update(lambda state: state.model_copy(update={"kill_switch": True}))
    await store.watch(on_change)  # until cancelled

``flock`` is reliable on local file systems only; across hosts, use ``RedisFlagStore``.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from gateway.flags.model import FlagState
from gateway.flags.stores import OnChange, StoreUnavailable
from gateway.flags.stores._watching import StoreHealth, deliver, parse_state

logger = structlog.get_logger("gateway.flags")

#: A writer holds the lock for one small read and write; waiting longer means something is stuck.
_LOCK_TIMEOUT = 5.0
_LOCK_POLL = 0.005
#: Watchers re-read the file this often even when its stat looks unchanged.
_REREAD_INTERVAL = 5.0
#: Files this store creates; readable by workers that run as another user than the operator.
_DEFAULT_MODE = 0o644


class FileFlagStore:
    """The flag state as one JSON file; see the module docstring."""

    def __init__(self, path: Path, *, poll_interval: float = 0.25) -> None:
        self.path = path
        self.poll_interval = poll_interval
        self.description = f"file:{path}"
        self._lock_path = path.with_suffix(path.suffix + ".lock")

    async def load(self) -> FlagState | None:
        return await asyncio.to_thread(self._read)

    async def update(self, change: Callable[[FlagState], FlagState]) -> FlagState:
        """Replace the state with ``change(current)``; ``change`` runs in a worker thread while
        the lock is held, so it must be quick and must not touch the event loop. A ``change`` that
        produces an invalid state raises ``ValidationError`` and nothing is written."""
        return await asyncio.to_thread(self._update, change)

    async def watch(self, on_change: OnChange) -> None:
        """Deliver the state found at start (so nothing changed since ``load`` is missed), then
        every state that differs from the last one delivered. Never raises; while the file is
        unreadable it keeps the last state and logs a warning every 30 s."""
        health = StoreHealth(self.description)
        seen: tuple[int, int, int] | None = None
        delivered: FlagState | None = None
        reread_at = 0.0
        while True:
            try:
                signature = await asyncio.to_thread(self._signature)
                if signature is None:
                    if delivered is not None:
                        # The state vanished (deleted, or a writer outside this store is
                        # mid-way): keep serving the last one rather than resetting every flag.
                        raise StoreUnavailable(f"{self.path}: file is missing")
                    seen = None  # nothing stored yet: the runtime's defaults apply
                elif signature != seen or time.monotonic() >= reread_at:
                    # The periodic re-read is insurance: a freed inode number can be reused by
                    # the next write, and mtime is only as fine as the kernel's clock tick, so two
                    # quick same-size writes could leave the same signature.
                    state = await self.load()
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
                health.failed(f"{self.path}: {exc!r}")
            await asyncio.sleep(self.poll_interval)

    async def close(self) -> None:
        """Nothing to release: every operation opens and closes its own files."""

    # The blocking halves, run in worker threads.

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        # The inode changes on every os.replace, so even a same-size write within the file
        # system's timestamp granularity is noticed.
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def _read(self) -> FlagState | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"{self.path}: cannot read ({exc.strerror})") from exc
        return parse_state(raw, source=str(self.path))

    def _update(self, change: Callable[[FlagState], FlagState]) -> FlagState:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, _DEFAULT_MODE)
        except OSError as exc:
            raise StoreUnavailable(f"{self._lock_path}: cannot open ({exc.strerror})") from exc
        try:
            self._acquire(lock_fd)
            # Reads under the lock, and an unreadable file fails the update instead of being
            # replaced by change(FlagState()), which would silently reset every other flag.
            current = self._read()
            if current is None:
                current = FlagState()
            changed = change(current).model_copy(update={"version": current.version + 1})
            payload = changed.model_dump_json(indent=2)
            # Validate exactly what readers will parse: an invalid state written here would make
            # every watcher report the store unavailable.
            new_state = FlagState.model_validate_json(payload)
            self._write_atomically(payload.encode())
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

    def _write_atomically(self, payload: bytes) -> None:
        directory = self.path.parent
        try:
            mode = self.path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = _DEFAULT_MODE
        try:
            fd, temp_name = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=directory
            )
        except OSError as exc:
            raise StoreUnavailable(f"{directory}: cannot create a file ({exc.strerror})") from exc
        try:
            with os.fdopen(fd, "wb") as temp:
                # mkstemp creates 0600; keep the mode the file had so other users' workers can
                # still read it after an operator's write.
                os.fchmod(temp.fileno(), mode)
                temp.write(payload)
                temp.flush()
                os.fsync(temp.fileno())
            os.replace(temp_name, self.path)
        except BaseException as exc:
            Path(temp_name).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StoreUnavailable(f"{self.path}: cannot write ({exc.strerror})") from exc
            raise
        # The rename is durable only once the directory entry is on disk. Readers already see
        # the new state, so a failure here is worth a warning, not a failed update.
        try:
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            logger.warning("flags.store_not_synced", store=self.description, reason=str(exc))
