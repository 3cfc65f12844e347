"""What rollout bookkeeping costs a request, in process (target: at most 2 µs).

::

    python bench/rollout_micro.py                 # 200,000 calls x 7 repeats per variant

Every finished request passes through ``RolloutOutcomes.observe``. Variants, interleaved:

- no rollout running (the common case: one attribute test);
- a rollout running, the request on a flag without one;
- a rollout running on the request's flag, new side (a count and a reservoir slot);
- the same once the step's reservoir is full (a random draw per request);
- the baseline: calling a function that does nothing, to subtract the call itself.

Prints the median µs per call, and the bookkeeping alone (minus the baseline).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from gateway.context import RequestFacts
from gateway.flags.model import FlagDecision, FlagSpec, FlagState
from gateway.rollout.changes import start
from gateway.rollout.outcomes import RESERVOIR, RolloutOutcomes
from gateway.shadow.results import ShadowResults

FLAG = "catalog-books"


def _facts(flag: str) -> RequestFacts:
    facts = RequestFacts(request_id="r", path="/api/books", method="GET")
    facts.decision = FlagDecision(flag, "new", "split", bucket=7)
    return facts


def _variants() -> dict[str, Callable[[], None]]:
    running = start(FLAG, "GET /api/books", (10, 100), 0.0, FlagSpec())(FlagState())
    idle = RolloutOutcomes(ShadowResults(), {FLAG: ["GET /api/books"]})
    busy = RolloutOutcomes(ShadowResults(), {FLAG: ["GET /api/books"]})
    busy.follow(running)
    full = RolloutOutcomes(ShadowResults(), {FLAG: ["GET /api/books"]})
    full.follow(running)
    mine, other = _facts(FLAG), _facts("accounts-me")
    for _ in range(RESERVOIR):
        full.observe(mine, 200, 0.004)

    def nothing(facts: RequestFacts, status: int | None, seconds: float) -> None:
        return None

    return {
        "baseline: an empty call": lambda: nothing(mine, 200, 0.004),
        "no rollout running": lambda: idle.observe(mine, 200, 0.004),
        "rollout on another flag": lambda: busy.observe(other, 200, 0.004),
        "rollout, new side": lambda: busy.observe(mine, 200, 0.004),
        "rollout, reservoir full": lambda: full.observe(mine, 200, 0.004),
    }


def _time(call: Callable[[], None], calls: int) -> float:
    started = time.perf_counter_ns()
    for _ in range(calls):
        call()
    return (time.perf_counter_ns() - started) / calls / 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--calls", type=int, default=200_000, help="calls per repeat")
    parser.add_argument("--repeats", type=int, default=7, help="repeats per variant (median)")
    args = parser.parse_args(argv)
    variants = _variants()
    timings: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, call in variants.items():
            timings[name].append(_time(call, args.calls))
    base = statistics.median(timings["baseline: an empty call"])
    print(
        f"RolloutOutcomes.observe, {args.calls} calls x {args.repeats} repeats "
        f"(Python {sys.version.split()[0]})"
    )
    print(f"{'variant':<28}{'µs/call':>9}{'min':>9}{'max':>9}{'minus baseline':>16}")
    for name, values in timings.items():
        median = statistics.median(values)
        print(
            f"{name:<28}{median:>9.3f}{min(values):>9.3f}{max(values):>9.3f}{median - base:>16.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
