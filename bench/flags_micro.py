"""Flag evaluation on the request path, in microseconds: what a flagged route adds per request.

    python bench/flags_micro.py

Times ``FlagRuntime.evaluate`` (the call the dispatcher makes) for a sticky canary with an
authenticated user, an anonymous caller bucketed by address, targeting, and a QA override, next
to a dictionary lookup for scale. Median of 7 repeats of 100,000 calls each.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable

from gateway.context import ANONYMOUS, Identity
from gateway.flags.model import FlagSpec
from gateway.flags.runtime import FlagRuntime
from gateway.flags.stores import FlagStore
from gateway.storage.memory import MemoryStorage

CALLS = 100_000
REPEATS = 7


def per_call_us(call: Callable[[], object]) -> float:
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter_ns()
        for _ in range(CALLS):
            call()
        samples.append((time.perf_counter_ns() - started) / CALLS / 1000)
    return statistics.median(samples)


async def main() -> None:
    runtime = FlagRuntime(
        defaults={
            "canary": FlagSpec(mode="canary", percentage=30),
            "targeted": FlagSpec(mode="legacy", allow_roles=frozenset({"beta"})),
            "plain": FlagSpec(mode="new"),
        },
        store=FlagStore(MemoryStorage()),
    )
    await runtime.start()
    alice = Identity("alice", frozenset({"beta"}), "session")
    qa = Identity("quinn", frozenset({"qa"}), "session")
    lookup = {"canary": 1}
    cases = {
        "dict lookup (scale)": lambda: lookup.get("canary"),
        "mode new (no hashing)": lambda: runtime.evaluate("plain", alice, "10.0.0.1"),
        "canary, signed-in user": lambda: runtime.evaluate("canary", alice, "10.0.0.1"),
        "canary, anonymous by address": lambda: runtime.evaluate("canary", ANONYMOUS, "10.0.0.1"),
        "targeting by role": lambda: runtime.evaluate("targeted", alice, "10.0.0.1"),
        "QA override": lambda: runtime.evaluate("canary", qa, "10.0.0.1", b"new"),
    }
    print(f"FlagRuntime.evaluate, {CALLS:,} calls x {REPEATS} repeats, median µs per call")
    for label, call in cases.items():
        print(f"  {label:<32}{per_call_us(call):>7.2f}")
    await runtime.stop()


if __name__ == "__main__":
    asyncio.run(main())
