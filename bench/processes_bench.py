"""What running the legacy app in worker processes costs per request: ``[legacy] isolation =
"processes"`` against the default threads, over HTTP.

::

    python bench/processes_bench.py                     # 5 rounds x 3 s per configuration
    python bench/processes_bench.py --rounds 3 --processes 1 --nice 0

Two configurations of ``gateway serve -c bench/gateway.toml`` (the JSON access log on, as in
``http_bench.py``) serving ``/legacy/hello`` (a trivial Flask view): the legacy app on 8 threads,
and in ``--processes`` worker processes at ``--nice`` (``GATEWAY_LEGACY__ISOLATION=processes``;
the default is the setting's, 10: on a machine others load, the workers then yield to their
processes as well as to the gateway's event loop, which costs throughput), measured in
interleaved rounds as ``http_bench.py`` measures (wrk, warm-up, pinned and unpinned). The CPU
time per request counts the gateway and its worker processes together (``/proc``); pinned, the
workers share core 0 with the gateway. Printed: each configuration's median req/s, p99 and CPU
per request, the ratios processes / threads, and the difference in CPU per request: the cost of
the hand-off to another process against the thread hand-off's (PERF-NOTES: 20-31 µs). There is
no target; the exit status is non-zero only when a run broke.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.http_bench import GATEWAY, PIN_MODES, Case, Server, WrkResult, cpu_ratio, run_guarded
from bench.paired import case_lines, measure_rounds, ratio_line


def cases(processes: int, nice: int) -> tuple[Case, Case]:
    isolated = Server(
        "gateway-processes",
        GATEWAY.argv,
        env=(
            ("GATEWAY_LEGACY__ISOLATION", "processes"),
            ("GATEWAY_LEGACY__PROCESSES", str(processes)),
            ("GATEWAY_LEGACY__NICE", str(nice)),
        ),
    )
    return (
        Case("threads", "legacy", "/legacy/hello, 8 threads", GATEWAY, "/legacy/hello"),
        Case(
            "processes",
            "legacy",
            f"/legacy/hello, {processes} processes, nice {nice}",
            isolated,
            "/legacy/hello",
        ),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=3, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--processes", type=int, default=2, help="legacy worker processes")
    parser.add_argument("--nice", type=int, default=10, help="their [legacy] nice, 0 to 19")
    args = parser.parse_args(argv)
    if min(args.duration, args.rounds, args.connections, args.processes) < 1:
        parser.error("--duration, --rounds, --connections and --processes must be at least 1")
    if not 0 <= args.nice <= 19:
        parser.error("--nice must be 0 to 19")
    return run_guarded("processes_bench", lambda wrk: _run(args, wrk))


def _run(args: argparse.Namespace, wrk: str) -> int:
    threads, processes = cases(args.processes, args.nice)
    runs = measure_rounds(args, wrk, (threads, processes))
    broken = False
    for mode in PIN_MODES:
        results = runs[mode.name]
        print(f"\n== {mode.name}: {mode.description} (median of {args.rounds} round(s)) ==")
        broken |= case_lines((threads, processes), results)
        _compare(results[processes.key], results[threads.key])
    return 1 if broken else 0


def _compare(processes: list[WrkResult], threads: list[WrkResult]) -> None:
    measured = list(zip(processes, threads, strict=True))
    ratio_line("req/s, processes / threads", [p.rps / t.rps for p, t in measured], None)
    ratio_line("CPU/request, threads / processes", [cpu_ratio(t, p) for p, t in measured], None)
    extra = [(p.cpu_us or 0.0) - (t.cpu_us or 0.0) for p, t in measured]
    print(
        f"  {'CPU/request, processes - threads':<44} {statistics.median(extra):.1f} µs "
        f"(range {min(extra):.1f} to {max(extra):.1f})"
    )


if __name__ == "__main__":
    sys.exit(main())
