"""One timer for many deadlines of one length (``gateway.adapters.deadlines``): each key's
``on_expiry`` runs once its deadline is due, never before, unless the key was discarded first;
a discarded oldest deadline does not hold back the ones after it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.adapters.deadlines import Deadlines

pytestmark = pytest.mark.anyio

SECONDS = 0.05
#: How early a deadline may fall due (the module's slack for millisecond timers).
EARLY = 0.001


async def test_a_deadline_falls_due_after_its_seconds_and_not_before() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, SECONDS)
    expired: list[float] = []
    started = loop.time()

    deadlines.add("a", lambda: expired.append(loop.time()))
    await asyncio.sleep(SECONDS / 2)
    assert expired == []
    await asyncio.sleep(SECONDS)

    assert len(expired) == 1
    assert expired[0] - started >= SECONDS - EARLY
    assert len(deadlines) == 0


async def test_a_discarded_key_never_expires_and_the_next_still_does_on_time() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, SECONDS)
    expired: dict[str, float] = {}
    deadlines.add("first", lambda: expired.setdefault("first", loop.time()))
    await asyncio.sleep(SECONDS / 2)
    second_added = loop.time()
    deadlines.add("second", lambda: expired.setdefault("second", loop.time()))

    deadlines.discard("first")
    await asyncio.sleep(SECONDS * 2)

    assert list(expired) == ["second"]
    assert expired["second"] - second_added >= SECONDS - EARLY
    # Discarding twice, or a key never added, is harmless.
    deadlines.discard("first")
    deadlines.discard("never")


async def test_deadlines_fall_due_in_the_order_they_were_set_each_on_its_own_time() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop, SECONDS)
    added: dict[int, float] = {}
    expired: dict[int, float] = {}
    for key in range(5):
        added[key] = loop.time()
        deadlines.add(key, lambda key=key: expired.setdefault(key, loop.time()))
        await asyncio.sleep(SECONDS / 4)
    deadlines.discard(2)

    await asyncio.sleep(SECONDS * 2)

    assert list(expired) == [0, 1, 3, 4]
    for key, when in expired.items():
        assert when - added[key] >= SECONDS - EARLY


async def test_an_expiry_that_raises_is_reported_and_the_others_still_run() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    deadlines = Deadlines(loop, SECONDS)
    expired: list[str] = []

    def fail() -> None:
        raise RuntimeError("expiry failed")

    try:
        deadlines.add("fails", fail)
        deadlines.add("works", lambda: expired.append("works"))
        await asyncio.sleep(SECONDS * 2)
    finally:
        loop.set_exception_handler(None)

    assert expired == ["works"]
    assert [str(context["exception"]) for context in reported] == ["expiry failed"]
