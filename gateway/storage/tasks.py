"""Stopping a background task that talks to the storage (the flag watcher, the report publisher).

::

    async with asyncio.timeout(2.0):     # bound it: TimeoutError if it is still running
        await cancel_and_wait(watcher)

A single ``task.cancel()`` is not enough on Python 3.11: ``asyncio.wait_for``, which redis-py
uses to send every command, returns its inner call's result instead of raising when the
cancellation lands just as that call completes (CPython gh-86296, fixed in 3.12 by rebuilding
``wait_for`` on ``asyncio.timeout``). The cancellation is lost and the task runs on, so a shut-down
that waits for it never ends. Like an anyio cancel scope, this re-delivers the cancellation until
the task ends.
"""

from __future__ import annotations

import asyncio
from typing import Any

#: How often the cancellation is re-delivered while the task is still running.
_REDELIVER_EVERY = 0.05


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling it again while it runs on."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_REDELIVER_EVERY)
