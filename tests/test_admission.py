"""Bounded admission to the legacy pool (``gateway.adapters.admission``): a slot is taken at once
while one is free; otherwise the request waits, first come first served, until a release hands
it the slot or ``wait`` seconds pass; a waiter that gave up or was cancelled never keeps a slot."""

from __future__ import annotations

import asyncio
import threading

import pytest

from gateway.adapters.admission import Admission

pytestmark = pytest.mark.anyio


async def _settle() -> None:
    """Let the loop run the callbacks a release scheduled."""
    for _ in range(3):
        await asyncio.sleep(0)


async def _full() -> Admission:
    """An admission of one slot, taken."""
    admission = Admission(1)
    assert await admission.acquire(asyncio.get_running_loop(), 5.0)
    return admission


async def _waiting(admission: Admission, wait: float = 5.0) -> asyncio.Task[bool]:
    """A request waiting for a slot, already queued."""
    waiter = asyncio.create_task(admission.acquire(asyncio.get_running_loop(), wait))
    await _settle()
    return waiter


async def test_slots_are_taken_at_once_up_to_the_limit() -> None:
    loop = asyncio.get_running_loop()
    admission = Admission(2)

    assert await admission.acquire(loop, 5.0)
    assert await admission.acquire(loop, 5.0)

    assert admission.busy == 2
    assert admission.waits == 0


async def test_a_waiter_gets_the_slot_a_release_frees_in_arrival_order() -> None:
    admission = await _full()
    first = await _waiting(admission)
    second = await _waiting(admission)
    assert not first.done()
    assert not second.done()

    admission.release()
    await _settle()

    assert first.done()
    assert await first is True
    assert not second.done()
    admission.release()
    assert await second is True
    assert admission.busy == 1
    assert admission.waits == 2


async def test_a_release_from_another_thread_wakes_the_waiter() -> None:
    admission = await _full()
    waiter = await _waiting(admission)

    threading.Thread(target=admission.release).start()

    assert await asyncio.wait_for(waiter, 5) is True
    assert admission.busy == 1


async def test_a_waiter_gives_up_after_its_wait_and_holds_no_slot() -> None:
    loop = asyncio.get_running_loop()
    admission = await _full()

    started = loop.time()
    assert await admission.acquire(loop, 0.05) is False

    assert loop.time() - started >= 0.05
    admission.release()
    assert admission.busy == 0
    # The slot is free again for the next request, at once.
    assert await admission.acquire(loop, 0.0) is True


async def test_a_slot_granted_to_a_waiter_that_already_gave_up_goes_to_the_next() -> None:
    admission = await _full()
    patient = await _waiting(admission)
    impatient = await _waiting(admission, 0.05)
    # The first waiter is cancelled (its client left): the grant meant for it is passed on.
    patient.cancel()
    await _settle()

    admission.release()

    assert await impatient is True
    assert admission.busy == 1
    with pytest.raises(asyncio.CancelledError):
        await patient


async def test_a_waiter_cancelled_just_after_its_grant_gives_the_slot_back() -> None:
    admission = await _full()
    waiter = await _waiting(admission)

    admission.release()  # the grant runs in the next turn of the loop ...
    await asyncio.sleep(0)
    waiter.cancel()  # ... and the cancellation reaches the waiter before it resumes

    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert admission.busy == 0


async def test_under_any_interleaving_no_more_than_the_limit_hold_a_slot_and_none_leaks() -> None:
    """Waiters that give up at about the moment a thread releases (the race ``_grant`` settles
    by passing a slot on) must neither leak a slot nor let one too many in."""
    loop = asyncio.get_running_loop()
    admission = Admission(2)
    holding = 0
    most = 0
    outcomes: list[bool] = []

    def finish() -> None:
        nonlocal holding
        holding -= 1
        admission.release()

    async def request(n: int) -> None:
        nonlocal holding, most
        granted = await admission.acquire(loop, (n % 5) / 1000)
        outcomes.append(granted)
        if granted:
            holding += 1
            most = max(most, holding)
            await asyncio.sleep((n % 3) / 2000)
            # Released from a thread, as the legacy pool's threads release.
            thread = threading.Thread(target=finish)
            thread.start()
            await asyncio.to_thread(thread.join)

    await asyncio.gather(*(request(n) for n in range(300)))

    assert most <= 2
    assert True in outcomes
    assert False in outcomes
    assert admission.busy == 0
    assert await admission.acquire(loop, 0.0)
    assert await admission.acquire(loop, 0.0)
