"""The flag store: the flag state document in a storage backend (``gateway.storage``), as the
flag runtime uses it.

The runtime reads the state at start-up, then ``watch`` keeps calling back with each new state;
the request path only ever reads the in-memory snapshot, so a slow or dead store never touches a
request::

    from pathlib import Path
    from gateway.storage.file import FileStorage

    store = FlagStore(FileStorage(Path("var/flags.json")))
    state = await store.load()                       # None: nothing stored yet
    await store.update(lambda state: state.model_copy(update={"kill_switch": True}))
    await store.watch(on_change)                     # runs until cancelled, never raises
    await store.close()                              # the storage closes with its last view

The worker's report store (``gateway.reports.ReportStore``) is a view over the same backend
instance, so both share one Redis client or one folder.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.errors import StoreUnavailable
from gateway.flags.model import FlagState
from gateway.storage import OnChange, Storage, StorageView

__all__ = ["FlagStore", "OnChange", "StoreUnavailable"]


class FlagStore(StorageView):
    """A view over a storage backend's flag state; see ``Storage`` for each call's contract."""

    def __init__(self, storage: Storage) -> None:
        super().__init__(storage)
        #: For logs and ``gateway flags``: ``file:var/flags.json``, ``redis://127.0.0.1:6379/0``.
        self.description = storage.description

    async def load(self) -> FlagState | None:
        return await self.storage.load_flags()

    async def update(self, change: Callable[[FlagState], FlagState]) -> FlagState:
        return await self.storage.update_flags(change)

    async def watch(self, on_change: OnChange) -> None:
        await self.storage.watch_flags(on_change)
