"""One change measured over HTTP: the same gateway with a feature off and on, in interleaved
rounds (``metrics_bench.py``, ``rollout_bench.py``).

Each pair is a route measured twice per round with wrk exactly as ``http_bench.py`` measures
(its servers, warm-up, pin modes): the "off" and "on" runs back to back, off first in odd
rounds and on first in even ones, so an order effect cancels out, and the ratio on / off is
taken within the round. Printed per pin mode: each configuration's median req/s, p99 and the
server's CPU time per request (read from ``/proc``: steadier than req/s when others load the
machine), and the median ratio of both with its range over rounds. The target is reported, not
enforced: ``run`` returns 1 only when a run broke (a server that did not start, wrk failing,
non-2xx answers).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.http_bench import (
    PIN_MODES,
    Case,
    PinMode,
    WrkResult,
    _measure_all,
    _problems,
    cpu_ratio,
    run_guarded,
)

#: The usual target: the feature on within 3 % of off.
WITHIN_3_PERCENT = 0.97


@dataclass(frozen=True, slots=True)
class Pair:
    """A route measured with the feature off and on."""

    name: str
    off: Case
    on: Case


def run(
    name: str,
    description: str,
    pairs: Sequence[Pair],
    argv: Sequence[str] | None = None,
    *,
    feature: str,
    target: float | None = WITHIN_3_PERCENT,
    prepare: Callable[[], None] | None = None,
) -> int:
    """Parse the usual options, measure ``pairs`` and print the report; the exit status.
    ``prepare`` runs once before the first server starts (a flag store to fill, say)."""
    parser = argparse.ArgumentParser(prog=name, description=description)
    parser.add_argument("--duration", type=int, default=3, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    args = parser.parse_args(argv)
    cases = tuple(case for pair in pairs for case in (pair.off, pair.on))

    def measure(wrk: str) -> int:
        if prepare is not None:
            prepare()
        runs = measure_rounds(args, wrk, cases)
        broken = False
        for mode in PIN_MODES:
            report = runs[mode.name]
            broken |= _report(
                mode.name, mode.description, report, args.rounds, pairs, feature, target
            )
        return 1 if broken else 0

    return run_guarded(name, measure)


def measure_rounds(
    args: argparse.Namespace,
    wrk: str,
    cases: tuple[Case, ...],
    modes: Sequence[PinMode] = PIN_MODES,
) -> dict[str, dict[str, list[WrkResult]]]:
    """``args.rounds`` rounds of every case in every pin mode, the cases' order reversed in
    even rounds; each case's results by pin mode."""
    runs: dict[str, dict[str, list[WrkResult]]] = {
        mode.name: {case.key: [] for case in cases} for mode in modes
    }
    rounds, args.rounds = args.rounds, 1
    for number in range(1, rounds + 1):
        print(f"round {number} of {rounds}", flush=True)
        args.cases = cases if number % 2 else tuple(reversed(cases))
        _measure_all(args, wrk, runs, modes)
    args.rounds = rounds
    return runs


def _report(
    mode: str,
    description: str,
    runs: dict[str, list[WrkResult]],
    rounds: int,
    pairs: Sequence[Pair],
    feature: str,
    target: float | None,
) -> bool:
    """Print one pin mode; return True if a run answered anything but 2xx or had errors."""
    print(f"\n== {mode}: {description} (median of {rounds} round(s)) ==")
    broken = case_lines([case for pair in pairs for case in (pair.off, pair.on)], runs)
    for pair in pairs:
        measured = list(zip(runs[pair.on.key], runs[pair.off.key], strict=True))
        label = f"{pair.name}, req/s, {feature} on / off"
        ratio_line(label, [on.rps / off.rps for on, off in measured], target)
        # The same comparison by CPU time per request (off / on, so that higher is better
        # here too): what the feature costs the server, less disturbed by other load.
        saved = [cpu_ratio(off, on) for on, off in measured]
        ratio_line(f"{pair.name}, CPU/request, off / on", saved, target)
    return broken


def case_lines(cases: Sequence[Case], runs: dict[str, list[WrkResult]], width: int = 36) -> bool:
    """Print each case's median req/s, p99 and CPU per request; return True if a run answered
    anything but 2xx or had socket errors (a broken run)."""
    broken = False
    for case in cases:
        results = runs[case.key]
        broken |= any(r.non_2xx or r.socket_errors for r in results)
        rps = statistics.median(r.rps for r in results)
        p99 = statistics.median(r.p99_ms for r in results)
        cpu = statistics.median(r.cpu_us or 0.0 for r in results)
        print(
            f"  {case.label:<{width}}{rps:>9.0f} req/s  p99 {p99:6.2f} ms  {cpu:6.1f} µs CPU/req"
            f"{_problems(results[0])}"
        )
    return broken


def ratio_line(label: str, per_round: list[float], target: float | None) -> None:
    """Print the median of per-round ratios, their range and the verdict against ``target``
    (``None``: a measurement with no target)."""
    median = statistics.median(per_round)
    if target is None:
        verdict = "no target"
    else:
        verdict = f"target >= {target}: {'met' if median >= target else 'NOT met'}"
    print(
        f"  {label:<44} {median:.3f} (range {min(per_round):.3f}-{max(per_round):.3f}; {verdict})"
    )
