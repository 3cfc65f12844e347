"""What Prometheus metrics cost: the same gateway with ``[metrics]`` on and off, over HTTP.

::

    python bench/metrics_bench.py                       # 5 rounds x 3 s per configuration
    python bench/metrics_bench.py --rounds 3 --duration 2

Four configurations of ``gateway serve -c bench/gateway.toml`` (tracing off, the JSON access log
on, as in ``http_bench.py``): ``/new/hello`` (FastAPI) and ``/legacy/hello`` (Flask), each with
metrics on (the default) and off (``GATEWAY_METRICS__ENABLED=false``). Measured with wrk exactly
as ``http_bench.py`` measures (its servers, warm-up, pin modes), in interleaved rounds: within a
round the "on" and "off" runs of a route are back to back (off first in odd rounds, on first in
even ones), and the ratio on / off is taken within the round. Printed per pin mode: each
configuration's median req/s, p99 and the server's CPU time per request (read from ``/proc``:
steadier than req/s when others load the machine), and the median ratio on / off of both, with
its range over rounds. The target (metrics on within 3 % of off: ratio >= 0.97) is reported,
not enforced: the exit status is non-zero only when a run broke (a server that did not start,
wrk failing, non-2xx answers).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.http_bench import (
    GATEWAY,
    PIN_MODES,
    BenchError,
    Case,
    Server,
    WrkResult,
    _check_machine,
    _ensure_wrk,
    _exit_on_signal,
    _measure_all,
    _problems,
)

TARGET = 0.97
METRICS_OFF = Server(
    "gateway-no-metrics", GATEWAY.argv, env=(("GATEWAY_METRICS__ENABLED", "false"),)
)
CASES = (
    Case("new.off", "new", "/new/hello, metrics off", METRICS_OFF, "/new/hello"),
    Case("new.on", "new", "/new/hello, metrics on", GATEWAY, "/new/hello"),
    Case("legacy.off", "legacy", "/legacy/hello, metrics off", METRICS_OFF, "/legacy/hello"),
    Case("legacy.on", "legacy", "/legacy/hello, metrics on", GATEWAY, "/legacy/hello"),
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=3, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        _check_machine()
        wrk = _ensure_wrk()
        runs = _measure_rounds(args, wrk)
    except BenchError as exc:
        print(f"\nmetrics_bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nmetrics_bench: interrupted; servers stopped", file=sys.stderr)
        return 130
    broken = False
    for mode in PIN_MODES:
        broken |= _report(mode.name, mode.description, runs[mode.name], args.rounds)
    return 1 if broken else 0


def _measure_rounds(args: argparse.Namespace, wrk: str) -> dict[str, dict[str, list[WrkResult]]]:
    """``http_bench``'s measurements, one round at a time: odd rounds run each route's "off"
    first, even rounds its "on" first, so an order effect cancels out over the rounds."""
    runs: dict[str, dict[str, list[WrkResult]]] = {
        mode.name: {case.key: [] for case in CASES} for mode in PIN_MODES
    }
    rounds, args.rounds = args.rounds, 1
    for number in range(1, rounds + 1):
        print(f"round {number} of {rounds}", flush=True)
        args.cases = CASES if number % 2 else tuple(reversed(CASES))
        _measure_all(args, wrk, runs)
    args.rounds = rounds
    return runs


def _report(mode: str, description: str, runs: dict[str, list[WrkResult]], rounds: int) -> bool:
    """Print one pin mode; return True if a run answered anything but 2xx or had errors."""
    print(f"\n== {mode}: {description} (median of {rounds} round(s)) ==")
    broken = False
    for case in CASES:
        results = runs[case.key]
        broken |= any(r.non_2xx or r.socket_errors for r in results)
        rps = statistics.median(r.rps for r in results)
        p99 = statistics.median(r.p99_ms for r in results)
        cpu = statistics.median(r.cpu_us or 0.0 for r in results)
        print(
            f"  {case.label:<30}{rps:>9.0f} req/s  p99 {p99:6.2f} ms  {cpu:6.1f} µs CPU/req"
            f"{_problems(results[0])}"
        )
    for route in ("new", "legacy"):
        pairs = list(zip(runs[f"{route}.on"], runs[f"{route}.off"], strict=True))
        _ratio(f"{route} route, req/s, metrics on / off", [on.rps / off.rps for on, off in pairs])
        # The same comparison by CPU time per request (off / on, so that higher is better
        # here too): what metrics cost the server, less disturbed by other load on the machine.
        cpu = [(off.cpu_us or 0.0) / (on.cpu_us or 1.0) for on, off in pairs]
        _ratio(f"{route} route, CPU/request, off / on", cpu)
    return broken


def _ratio(label: str, per_round: list[float]) -> None:
    median = statistics.median(per_round)
    verdict = "within 3%" if median >= TARGET else "NOT within 3%"
    print(
        f"  {label:<38} {median:.3f} (range {min(per_round):.3f}-{max(per_round):.3f}; "
        f"target >= {TARGET}: {verdict})"
    )


if __name__ == "__main__":
    sys.exit(main())
