"""A new route's latency while legacy handlers saturate the Flask thread pool.

::

    python bench/saturation.py                  # sleeping handlers, 3,000 timed requests per phase
    python bench/saturation.py --requests 1000 --slow-clients 32 --slow-seconds 0.2
    python bench/saturation.py --cpu-bound --switch-interval 0.005,0.001,0.0005
                                                # handlers that burn 10 ms of pure-Python CPU
    python bench/saturation.py --cpu-bound --isolation threads,processes --processes 8,2
                                                # the legacy app on threads, then in processes
    python bench/saturation.py --cpu-bound --isolation processes --nice 0,10
    python bench/saturation.py --cpu-bound --isolation processes --scheduling normal,idle

One ``gateway serve`` process (legacy threads 8) per switch interval; with ``--isolation
processes``, one more per ``--processes`` count and ``--nice`` value, the legacy app in that many
worker processes at that priority below the gateway's (``[legacy] isolation = "processes"``,
``nice``), and one per count with ``--scheduling idle`` (``scheduling = "idle"``; no switch
interval: nothing shares the gateway's GIL with the views). Phase 1 times ``GET /new/hello``
(FastAPI) one request after another over one kept-alive connection: the unloaded p50, p99 and
max. Phase 2 starts ``--slow-clients`` threads that call a legacy handler in
a loop, more than the pool has threads, so the pool stays full and requests queue for admission,
then times the new route again, and counts the legacy requests answered meanwhile (legacy
throughput: what a smaller switch interval must not cost much).

The legacy handler either sleeps (``/legacy/slow``: it releases the GIL, the easy case) or, with
``--cpu-bound``, burns ``--burn-ms`` of pure-Python CPU (``/legacy/burn``: it holds the GIL
except when the interpreter switches threads, every ``sys.getswitchinterval()`` seconds; the
hard case). ``--switch-interval`` sets the server's interval (comma-separated: one server each,
in that order; ``default`` is the interpreter's 5 ms).

Prints one row per phase and interval, the p99 ratio loaded / unloaded and the targets (at most
2 times, and at most 3 ms loaded with CPU-bound handlers). Targets are reported, not enforced:
the exit status is non-zero only when a run broke.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hardening_apps import serving

TARGET_RATIO = 2.0
TARGET_P99_MS = 3.0
THREADS = 8


@dataclass(frozen=True, slots=True)
class Setup:
    """One server: the legacy app on threads (with a switch interval) or in processes."""

    interval: float | None = None
    processes: int | None = None
    nice: int = 10
    scheduling: str = "normal"

    @property
    def name(self) -> str:
        if self.processes is not None and self.scheduling == "idle":
            return f"{self.processes} processes, idle"
        if self.processes is not None:
            return f"{self.processes} processes, nice {self.nice}"
        interval = "default" if self.interval is None else f"{self.interval * 1000:g} ms"
        return f"{THREADS} threads, switch {interval}"


@dataclass(frozen=True, slots=True)
class Phases:
    setup: Setup
    unloaded: list[float]
    loaded: list[float]
    legacy_statuses: Counter[int]
    legacy_per_second: float


def timed_requests(port: int, path: str, count: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}")
    connection.close()
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(args: argparse.Namespace, setup: Setup) -> Phases:
    legacy_path = (
        f"/legacy/burn?ms={args.burn_ms}"
        if args.cpu_bound
        else f"/legacy/slow?seconds={args.slow_seconds}"
    )
    server = serving(
        threads=THREADS,
        queue_timeout=5.0,
        switch_interval=setup.interval,
        processes=setup.processes,
        nice=setup.nice,
        scheduling=setup.scheduling,
    )
    with server as (port, _pid):
        timed_requests(port, "/new/hello", 300)  # warm-up
        unloaded = timed_requests(port, "/new/hello", args.requests)

        stop = threading.Event()
        legacy_statuses: Counter[int] = Counter()

        def hammer() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while not stop.is_set():
                connection.request("GET", legacy_path)
                response = connection.getresponse()
                response.read()
                legacy_statuses[response.status] += 1
            connection.close()

        clients = [threading.Thread(target=hammer) for _ in range(args.slow_clients)]
        for client in clients:
            client.start()
        time.sleep(1.0)  # the pool is full and requests are queueing
        answered_before, started = legacy_statuses[200], time.monotonic()
        loaded = timed_requests(port, "/new/hello", args.requests)
        legacy_rate = (legacy_statuses[200] - answered_before) / (time.monotonic() - started)
        stop.set()
        for client in clients:
            client.join(30)
    return Phases(setup, unloaded, loaded, legacy_statuses, legacy_rate)


def _intervals(text: str) -> list[float | None]:
    intervals: list[float | None] = []
    for part in text.split(","):
        value = part.strip()
        if value == "default":
            intervals.append(None)
            continue
        try:
            seconds = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
        if seconds <= 0:
            raise argparse.ArgumentTypeError(f"a switch interval must be positive: {value!r}")
        intervals.append(seconds)
    return intervals


def _words(*allowed: str) -> Callable[[str], list[str]]:
    """An argument type: a comma-separated list of the ``allowed`` words."""

    def parse(text: str) -> list[str]:
        chosen = [part.strip() for part in text.split(",")]
        unknown = [part for part in chosen if part not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(f"not {' or '.join(allowed)}: {', '.join(unknown)}")
        return chosen

    return parse


_isolations = _words("threads", "processes")
_schedulings = _words("normal", "idle")


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not whole numbers: {text!r}") from None
    if min(counts) < 0:
        raise argparse.ArgumentTypeError(f"negative: {text!r}")
    return counts


def report(results: list[Phases], args: argparse.Namespace) -> None:
    handler = (
        f"handlers burning {args.burn_ms} ms of CPU"
        if args.cpu_bound
        else f"{args.slow_seconds}s sleeping handlers"
    )
    print(f"legacy load: {args.slow_clients} clients, {handler}")
    header = ("legacy pool", "phase", "p50 ms", "p99 ms", "max ms", "legacy req/s")
    rows = [header]
    for result in results:
        name = result.setup.name
        for phase, values, rate in (
            ("unloaded", result.unloaded, ""),
            ("legacy saturated", result.loaded, f"{result.legacy_per_second:.1f}"),
        ):
            rows.append(
                (
                    name,
                    phase,
                    f"{statistics.median(values):.2f}",
                    f"{percentile(values, 0.99):.2f}",
                    f"{max(values):.2f}",
                    rate,
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    for result in results:
        name = result.setup.name
        loaded_p99 = percentile(result.loaded, 0.99)
        ratio = loaded_p99 / percentile(result.unloaded, 0.99)
        verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
        line = f"{name}: new-route p99 loaded / unloaded {ratio:.2f} (<= 2x: {verdict})"
        if args.cpu_bound:
            met = "met" if loaded_p99 <= TARGET_P99_MS else "NOT met"
            line += f"; loaded p99 {loaded_p99:.2f} ms (<= {TARGET_P99_MS:g} ms: {met})"
        print(f"{line}; legacy statuses {dict(sorted(result.legacy_statuses.items()))}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--slow-clients", type=int, default=32)
    parser.add_argument("--slow-seconds", type=float, default=0.2)
    parser.add_argument(
        "--cpu-bound", action="store_true", help="legacy handlers burn CPU instead of sleeping"
    )
    parser.add_argument("--burn-ms", type=float, default=10.0, help="CPU per legacy request")
    parser.add_argument(
        "--switch-interval",
        type=_intervals,
        default=[None],
        help="the server's sys.setswitchinterval, seconds; comma-separated for several runs",
    )
    parser.add_argument(
        "--isolation",
        type=_isolations,
        default=["threads"],
        help="threads, processes, or both (comma-separated): where the legacy app runs",
    )
    parser.add_argument(
        "--processes",
        type=_counts,
        default=[THREADS],
        help="worker processes with --isolation processes; comma-separated for several runs",
    )
    parser.add_argument(
        "--nice",
        type=_counts,
        default=[10],
        help="[legacy] nice of the worker processes; comma-separated for several runs",
    )
    parser.add_argument(
        "--scheduling",
        type=_schedulings,
        default=["normal"],
        help="[legacy] scheduling of the worker processes (normal: at each --nice; idle); "
        "comma-separated for several runs",
    )
    args = parser.parse_args(argv)
    if min(args.processes) < 1 or max(args.nice) > 19:
        parser.error("--processes must be at least 1 and --nice at most 19")
    setups = []
    if "threads" in args.isolation:
        setups += [Setup(interval=interval) for interval in args.switch_interval]
    if "processes" in args.isolation:
        for count in args.processes:
            for scheduling in args.scheduling:
                if scheduling == "idle":
                    setups.append(Setup(processes=count, scheduling="idle"))
                else:
                    setups += [Setup(processes=count, nice=nice) for nice in args.nice]
    try:
        results = [measure(args, setup) for setup in setups]
    except (RuntimeError, OSError) as exc:
        print(f"saturation: error: {exc}", file=sys.stderr)
        return 1
    report(results, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
