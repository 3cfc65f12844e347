"""Many deadlines of one length under one timer: the legacy adapter's request timeout.

Every legacy request must start its response within ``request_timeout`` seconds. A timer per
request (``loop.call_later`` when it starts, ``cancel()`` when it ends) costs about 1.5 µs on
uvloop, for a timer that almost never fires. Written here because asyncio has no cheaper
primitive: deadlines of one length fall due in the order they were set, so one timer, armed
for the oldest, serves them all. A request adds itself (a dict insert) and discards itself when
it ends (a pop); when the timer fires it expires what is due and re-arms for the oldest left::

    deadlines = Deadlines(loop, 30.0)
    deadlines.add(key, on_expiry)   # on_expiry() runs 30 s from now, on the loop, unless
    deadlines.discard(key)          # the key is discarded first
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable

#: A deadline this close is due: uvloop's timers count whole milliseconds, and may fire a
#: fraction of one early.
_SLACK = 0.001


class Deadlines:
    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self.loop = loop
        self.seconds = seconds
        #: Key -> (when, on_expiry), oldest first: every deadline is ``seconds`` long.
        self._pending: dict[Hashable, tuple[float, Callable[[], None]]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, key: Hashable, on_expiry: Callable[[], None]) -> None:
        """Call ``on_expiry()`` ``seconds`` from now unless ``key`` is discarded before. A key
        is added once (the legacy adapter adds each request's channel once): added again while
        pending, it would keep its first place and break the oldest-first order."""
        when = self.loop.time() + self.seconds
        self._pending[key] = (when, on_expiry)
        if self._timer is None:
            self._timer = self.loop.call_at(when, self._fire)

    def discard(self, key: Hashable) -> None:
        self._pending.pop(key, None)

    def __len__(self) -> int:
        return len(self._pending)

    def _fire(self) -> None:
        self._timer = None
        pending = self._pending
        due = self.loop.time() + _SLACK
        while pending:
            key = next(iter(pending))
            when, on_expiry = pending[key]
            if when > due:
                self._timer = self.loop.call_at(when, self._fire)
                return
            del pending[key]
            # Called as a timer's callback would be: what it raises is the loop's to report,
            # and the deadlines after it still fall due.
            self.loop.call_soon(on_expiry)
