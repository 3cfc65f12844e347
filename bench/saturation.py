"""A new route's latency while slow legacy handlers saturate the Flask thread pool.

::

    python bench/saturation.py                  # 3,000 timed requests per phase
    python bench/saturation.py --requests 1000 --slow-clients 32 --slow-seconds 0.2

One ``gateway serve`` process (legacy threads 8). Phase 1 times ``GET /new/hello`` (FastAPI)
one request after another over one kept-alive connection: the unloaded p50 and p99. Phase 2
starts ``--slow-clients`` threads that call ``GET /legacy/slow`` (a handler that sleeps) in a
loop, more than the pool has threads, so the pool stays full and requests queue for admission,
then times the new route again. Prints both, the p99 ratio and the target (at most 2 times).
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hardening_apps import serving

TARGET_RATIO = 2.0
THREADS = 8


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--slow-clients", type=int, default=32)
    parser.add_argument("--slow-seconds", type=float, default=0.2)
    args = parser.parse_args(argv)

    with serving(threads=THREADS, queue_timeout=5.0) as (port, _pid):
        timed_requests(port, "/new/hello", 300)  # warm-up
        unloaded = timed_requests(port, "/new/hello", args.requests)

        stop = threading.Event()
        legacy_statuses: Counter[int] = Counter()

        def hammer() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while not stop.is_set():
                connection.request("GET", f"/legacy/slow?seconds={args.slow_seconds}")
                response = connection.getresponse()
                response.read()
                legacy_statuses[response.status] += 1
            connection.close()

        clients = [threading.Thread(target=hammer) for _ in range(args.slow_clients)]
        for client in clients:
            client.start()
        time.sleep(1.0)  # the pool is full and requests are queueing
        loaded = timed_requests(port, "/new/hello", args.requests)
        stop.set()
        for client in clients:
            client.join(30)

    rows = [("phase", "p50 ms", "p99 ms", "max ms")]
    for name, values in (("unloaded", unloaded), ("legacy saturated", loaded)):
        rows.append(
            (
                name,
                f"{statistics.median(values):.2f}",
                f"{percentile(values, 0.99):.2f}",
                f"{max(values):.2f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    ratio = percentile(loaded, 0.99) / percentile(unloaded, 0.99)
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(
        f"new-route p99 loaded / unloaded: {ratio:.2f} (target <= {TARGET_RATIO:.0f}x: {verdict})"
    )
    print(
        f"legacy load: {args.slow_clients} clients on {THREADS} threads, "
        f"{args.slow_seconds}s handlers; statuses {dict(sorted(legacy_statuses.items()))}"
    )
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
