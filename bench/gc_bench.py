"""Is p99 set by the garbage collector? Latency with the gateway's ``gc.freeze`` on and off.

::

    python bench/gc_bench.py                                # 3 rounds x 8 s per route, 1000 req/s
    python bench/gc_bench.py --rounds 2 --duration 3        # a smoke run

The gateway calls ``gc.collect(); gc.freeze()`` at the end of its start-up, so that the objects
built then (apps, routes, settings, imported modules) are never scanned again by a full
collection. This benchmark serves ``bench/gateway.toml`` (one worker, pinned to core 0) through
``bench/gc_serve.py``, either as shipped (``frozen``) or with the freeze skipped
(``unfrozen``), with a ``gc.callbacks`` timer in the server that logs how many collections ran
and the longest pause. The client (core 1) is ``shadow_bench.py``'s open loop: a fixed rate
below saturation, latency counted from each request's scheduled time, so a pause is charged to
every request it delays. Per round both servers start afresh (the order alternates), and each
measures ``/new/hello`` then ``/legacy/hello``.

Printed per route and mode: medians over rounds (with ranges) of p50, p99, p99.9 and the
maximum, the gen-2 collections and the longest GC pause inside the measurement; then the
per-round ratios unfrozen / frozen of p99 and of the maximum. The exit status is 1 only when a
run broke (a server that did not start, an answer other than 200).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gc_serve import INTERVAL, MODES
from bench.http_bench import (
    BENCH_CONFIG,
    REPO,
    BenchError,
    Server,
    _serving,
    run_guarded,
)
from bench.servers import HOST, ServerNotReady, free_port, wait_until_ready
from bench.shadow_bench import open_loop, percentile

ROUTES = ("/new/hello", "/legacy/hello")


@dataclass(frozen=True, slots=True)
class Sample:
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    gen2: int
    collections: int
    longest_pause_ms: float


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="requests per second")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections")
    args = parser.parse_args(argv)
    if args.rate < 1 or args.duration <= 0 or args.rounds < 1 or args.connections < 1:
        parser.error("--rate, --duration, --rounds and --connections must be positive")
    return run_guarded("gc_bench", lambda _wrk: _run(args))


def _run(args: argparse.Namespace) -> int:
    os.sched_setaffinity(0, {1})  # the client; the server goes to core 0
    print(
        f"gc_bench: {args.rounds} round(s) x {len(MODES)} modes x {len(ROUTES)} routes, "
        f"{args.duration:g} s each, open loop {args.rate} req/s on {args.connections} connections",
        flush=True,
    )
    samples: dict[tuple[str, str], list[Sample]] = {(m, r): [] for m in MODES for r in ROUTES}
    with tempfile.TemporaryDirectory(prefix="gc_bench-") as scratch:
        for number in range(1, args.rounds + 1):
            for mode in MODES if number % 2 else MODES[::-1]:
                for route, sample in _measure(mode, args, Path(scratch)):
                    samples[mode, route].append(sample)
                    print(
                        f"  round {number} {mode:<8} {route:<14} p99 {sample.p99_ms:6.2f} ms  "
                        f"max {sample.max_ms:6.2f} ms  gen-2 {sample.gen2:>3}  "
                        f"longest GC pause {sample.longest_pause_ms:6.2f} ms",
                        flush=True,
                    )
    _report(samples, args.rounds)
    return 0


def _measure(mode: str, args: argparse.Namespace, scratch: Path) -> list[tuple[str, Sample]]:
    port = free_port()
    gc_log = scratch / f"gc-{mode}-{port}.log"
    script = str(REPO / "bench" / "gc_serve.py")
    server = Server(
        f"gateway-{mode}",
        (sys.executable, script, mode, "serve", "-c", BENCH_CONFIG, "--port", "{port}"),
        env=(("GC_BENCH_LOG", str(gc_log)),),
    )
    log_path = scratch / f"{server.name}-{port}.log"
    measured = []
    with _serving(server, port, "0", log_path) as process:
        try:
            wait_until_ready(process, port, "/_gateway/ready", log_path)
        except ServerNotReady as exc:
            raise BenchError(str(exc)) from None
        base = f"http://{HOST}:{port}"
        for route in ROUTES:  # warm-up
            asyncio.run(open_loop(base + route, args.rate, 1.0, args.connections))
        for route in ROUTES:
            started = time.monotonic()
            latencies, errors = asyncio.run(
                open_loop(base + route, args.rate, args.duration, args.connections)
            )
            ended = time.monotonic()
            if errors:
                raise BenchError(f"{mode} {route}: {errors} answers other than 200")
            time.sleep(INTERVAL * 1.5)  # the line covering the window's end is written
            measured.append((route, _sample(latencies, gc_log, started, ended)))
    log_path.unlink(missing_ok=True)
    return measured


def _sample(latencies: list[float], gc_log: Path, started: float, ended: float) -> Sample:
    """Latency percentiles, and the collector's lines that fall in the window (each line counts
    the quarter second before its time stamp)."""
    gen2 = collections = 0
    longest = 0.0
    for line in gc_log.read_text().splitlines():
        stamp, gen2_here, collections_here, pause = line.split()
        if started < float(stamp) <= ended + INTERVAL:
            gen2 += int(gen2_here)
            collections += int(collections_here)
            longest = max(longest, float(pause))
    return Sample(
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        p999_ms=percentile(latencies, 99.9),
        max_ms=max(latencies),
        gen2=gen2,
        collections=collections,
        longest_pause_ms=longest,
    )


def _report(samples: dict[tuple[str, str], list[Sample]], rounds: int) -> None:
    print(f"\n== medians over {rounds} round(s), [lowest-highest round] ==")
    columns: tuple[tuple[str, Callable[[Sample], float]], ...] = (
        ("p50 ms", lambda s: s.p50_ms),
        ("p99 ms", lambda s: s.p99_ms),
        ("p99.9 ms", lambda s: s.p999_ms),
        ("max ms", lambda s: s.max_ms),
        ("gen-2 GCs", lambda s: s.gen2),
        ("GC pause max ms", lambda s: s.longest_pause_ms),
    )
    print(f"  {'':<24}" + "".join(f"{name:>24}" for name, _ in columns))
    for route in ROUTES:
        for mode in MODES:
            cells = []
            for _, value in columns:
                values = [value(sample) for sample in samples[mode, route]]
                cells.append(
                    f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"
                )
            print(f"  {route + ' ' + mode:<24}" + "".join(f"{cell:>24}" for cell in cells))
    print("\n  unfrozen / frozen, per round (above 1: the freeze helps)")
    for route in ROUTES:
        pairs = list(zip(samples["unfrozen", route], samples["frozen", route], strict=True))
        for name, value in (("p99", lambda s: s.p99_ms), ("max", lambda s: s.max_ms)):
            ratios = [value(off) / value(on) for off, on in pairs]
            print(
                f"  {route:<14} {name:<4} {statistics.median(ratios):.2f} "
                f"(range {min(ratios):.2f}-{max(ratios):.2f})"
            )


if __name__ == "__main__":
    sys.exit(main())
