"""Where the live flag state lives, and how changes reach every process.

A store holds one ``FlagState`` document. The runtime reads it at start-up, then the store's
``watch`` keeps calling back with each new state; the request path only ever reads the in-memory
snapshot, so a slow or dead store never touches a request::

    from pathlib import Path
    from gateway.flags.stores.file import FileFlagStore

    store = FileFlagStore(Path("var/flags.json"))
    state = await store.load()                       # None: nothing stored yet
    await store.update(lambda state: state.model_copy(update={"kill_switch": True}))
    await store.watch(on_change)                     # runs until cancelled, never raises

Only the modules in this package talk to a store's backend (the file system, Redis).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from gateway.flags.model import FlagState

OnChange = Callable[[FlagState], Awaitable[None] | None]


class StoreUnavailable(Exception):
    """The store cannot be read or written right now (down, timed out, or holds garbage)."""


class FlagStore(Protocol):
    #: For logs and ``gateway flags``: ``file:var/flags.json``, ``redis://127.0.0.1:6379/0``.
    description: str

    async def load(self) -> FlagState | None:
        """The stored state, ``None`` if nothing was ever stored; ``StoreUnavailable`` if the
        store cannot be read or holds something that is not a valid state."""
        ...

    async def update(self, change: Callable[[FlagState], FlagState]) -> FlagState:
        """Atomically replace the state with ``change(current)`` (an empty state when nothing is
        stored), bump ``version``, notify every watcher, and return the new state. Concurrent
        updates from other processes or hosts are never lost."""
        ...

    async def watch(self, on_change: OnChange) -> None:
        """Call ``on_change`` with every new state (within a second of the change), until
        cancelled. Never raises: while the store is unavailable it logs one warning per
        interval and keeps trying."""
        ...

    async def close(self) -> None: ...
