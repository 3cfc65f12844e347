"""Where the gateway keeps what its processes share: the flag state and worker reports.

One backend per kind, chosen by ``[flags] store``: ``file.FileStorage`` (every worker on one
host), ``redis.RedisStorage`` (several hosts), ``memory.MemoryStorage`` (one process). Each holds
both documents, so a worker has one Redis client (or one folder) for its flags and its report,
one atomic write (``atomic``), and one warning policy for a store that keeps failing
(``health``). The flag store and the report store are thin views over one backend, and the
backend closes when its last view does::

    from gateway.flags.stores import FlagStore
    from gateway.reports import ReportStore
    from gateway.storage.redis import RedisStorage

    storage = RedisStorage("redis://127.0.0.1:6379/0", key="gateway:flags")
    flags = FlagStore(storage)        # gateway.flags.stores: load, update, watch
    reports = ReportStore(storage)    # gateway.reports: publish, remove, read
    ...
    await reports.close()
    await flags.close()               # the last view: the Redis client closes here, once

``gateway.build.build_storage`` builds the backend from ``[flags]``. Only the modules in
this package talk to the file system or Redis on the storage's behalf.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from gateway.errors import StoreUnavailable
from gateway.flags.model import FlagState
from gateway.storage.documents import STALE_AFTER, OnChange, Report

__all__ = ["STALE_AFTER", "OnChange", "Report", "Storage", "StorageView", "StoreUnavailable"]


class Storage(abc.ABC):
    """A storage backend: the flag state document and one report per worker."""

    #: Where the flag state lives, for logs and ``gateway flags``: ``file:var/flags.json``,
    #: ``redis://127.0.0.1:6379/0`` (never with a password).
    description: str
    #: Where the worker reports live: ``file:var/reports``, ``redis://... keys gateway:...*``.
    reports_description: str

    def __init__(self) -> None:
        self._views = 0

    # -- the flag state ----------------------------------------------------------------------

    @abc.abstractmethod
    async def load_flags(self) -> FlagState | None:
        """The stored state, ``None`` if nothing was ever stored; ``StoreUnavailable`` if the
        storage cannot be read or holds something that is not a valid state."""

    @abc.abstractmethod
    async def update_flags(self, change: Callable[[FlagState], FlagState]) -> FlagState:
        """Atomically replace the state with ``change(current)`` (an empty state when nothing is
        stored), bump ``version``, notify every watcher, and return the new state. Concurrent
        updates from other processes or hosts are never lost. A ``change`` that yields an
        invalid state raises ``ValidationError`` and nothing is written."""

    @abc.abstractmethod
    async def watch_flags(self, on_change: OnChange) -> None:
        """Call ``on_change`` with the state found at start, then with every new state (within
        a second of the change), until cancelled. Never raises: while the storage is
        unavailable it keeps the last state, logs one warning per interval and keeps trying."""

    # -- worker reports ----------------------------------------------------------------------

    @abc.abstractmethod
    async def publish_report(self, worker: str, report: Report) -> None:
        """Store ``worker``'s report, replacing its previous one; it counts as gone once it is
        ``STALE_AFTER`` seconds old."""

    @abc.abstractmethod
    async def remove_report(self, worker: str) -> None:
        """Remove ``worker``'s report (nothing happens when there is none)."""

    @abc.abstractmethod
    async def read_reports(self) -> list[Report]:
        """Every fresh report; half-written, garbage and stale ones are left out."""

    # -- life cycle --------------------------------------------------------------------------

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the backend's resources now (the Redis client; a closed Redis backend
        refuses further calls with ``StoreUnavailable`` instead of connecting again). Closing
        twice is fine; views close it through ``detach``."""

    def attach(self) -> None:
        """A view starts using this backend (see ``StorageView``)."""
        self._views += 1

    async def detach(self) -> None:
        """A view is done with this backend; the last one to go closes it. So a worker's flag
        store and report store can stop in any order and the client closes once, after both."""
        self._views -= 1
        if self._views <= 0:
            await self.close()


class StorageView:
    """One user of a backend (the flag store, the report store): attached while open, so the
    backend closes once, when its last view closes."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._open = True
        storage.attach()

    async def close(self) -> None:
        """Done with the storage; it closes when no other view uses it. Closing twice is fine."""
        if self._open:
            self._open = False
            await self.storage.detach()
