"""Does shadowing slow the client down? Client-side latency of a route with and without shadow.

::

    python bench/shadow_bench.py                  # 5 rounds x 8 s per route at 300 req/s
    python bench/shadow_bench.py --rate 600 --rounds 3

One gateway (``bench/gateway.toml``) serves ``/shadow/on`` and ``/shadow/off``: the same legacy
Flask handler answers both; ``/shadow/on`` also copies every request (100% sampling, noise
calibration at its default 10%) to the FastAPI candidate, which answers the same JSON, and
compares the answers. The gateway runs on core 0 (``taskset``), the client on core 1.

The client is open-loop: requests are scheduled at a fixed rate, below saturation, on a few
keep-alive connections, and each latency is measured from the request's *scheduled* time, so a
stall is charged to every request it delays (no coordinated omission). Rounds interleave the two
routes; the report gives each route's p50/p99 per round and the median of the per-round p99
ratios, judged against the target: shadowed p99 within 1.1x of unshadowed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.servers import HOST, ServerNotReady, free_port, wait_until_ready  # noqa: E402

TARGET = 1.10
ROUTES = ("/shadow/off", "/shadow/on")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=300, help="requests per second")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="shadow_bench-") as scratch:
        log_path = Path(scratch) / "gateway.log"
        server = _start(port, log_path)
        try:
            try:
                wait_until_ready(server, port, "/_gateway/ready", log_path)
            except ServerNotReady as exc:
                raise SystemExit(f"shadow_bench: {exc}") from None
            base = f"http://{HOST}:{port}"
            for route in ROUTES:  # warm-up
                asyncio.run(open_loop(base + route, args.rate, 1.0, args.connections))
            p99s: dict[str, list[float]] = {route: [] for route in ROUTES}
            ratios = []
            for round_number in range(1, args.rounds + 1):
                order = ROUTES if round_number % 2 else ROUTES[::-1]
                for route in order:
                    latencies, errors = asyncio.run(
                        open_loop(base + route, args.rate, args.duration, args.connections)
                    )
                    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
                    p99s[route].append(p99)
                    print(
                        f"  round {round_number} {route:<12} {len(latencies):>5} requests "
                        f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  errors {errors}",
                        flush=True,
                    )
                ratios.append(p99s["/shadow/on"][-1] / p99s["/shadow/off"][-1])
            report = _shadow_report(Path(scratch) / "reports")
        finally:
            server.terminate()
            server.wait(10)

    ratio = statistics.median(ratios)
    print(f"\nopen-loop {args.rate} req/s, {args.connections} connections, {args.rounds} rounds")
    for route in ROUTES:
        print(f"  {route:<12} p99 median {statistics.median(p99s[route]):6.2f} ms")
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(
        f"  shadowed / unshadowed p99: {ratio:.2f} (per round: "
        f"{', '.join(f'{r:.2f}' for r in ratios)}); target <= {TARGET}: {verdict}"
    )
    print(f"  shadow results for /shadow/on: {json.dumps(report)}")
    return 0 if ratio <= TARGET else 1


async def open_loop(
    url: str, rate: int, duration: float, connections: int
) -> tuple[list[float], int]:
    """Open loop: request i is due at start + i/rate and goes out on the first idle keep-alive
    connection; its latency counts from when it was due. Plain HTTP/1.1 over asyncio streams:
    a light client, so the client's own CPU stays far from a limit."""
    parsed = httpx.URL(url)
    request = f"GET {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}\r\n\r\n".encode()
    total = int(rate * duration)
    due_times: asyncio.Queue[float | None] = asyncio.Queue()
    latencies: list[float] = []
    errors = 0

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
        try:
            while (due := await due_times.get()) is not None:
                writer.write(request)
                status = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                if b" 200 " not in status:
                    errors += 1
                latencies.append((time.perf_counter() - due) * 1000)
        finally:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    start = time.perf_counter() + 0.1
    for index in range(total):
        due = start + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        due_times.put_nowait(due)
    for _ in workers:
        due_times.put_nowait(None)
    await asyncio.gather(*workers)
    return latencies, errors


def percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * percent / 100))]


def _shadow_report(reports: Path) -> dict[str, object]:
    """What the worker published about /shadow/on (proof that the copies ran and matched)."""
    time.sleep(1.5)  # a worker publishes its report every second
    for path in reports.glob("*.json"):
        routes = json.loads(path.read_text())["shadow"]["routes"]
        counts: dict[str, object] = routes.get("GET /shadow/on", {})
        return counts
    return {}


def _start(port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env["GATEWAY_LOGGING__FORMAT"] = "json"
    # A file flag store in the scratch folder, so the worker publishes its shadow report there.
    env["GATEWAY_FLAGS__STORE"] = '"file"'
    env["GATEWAY_FLAGS__FILE"] = json.dumps(str(log_path.parent / "flags.json"))
    gateway = str(Path(sys.executable).parent / "gateway")
    argv = ["taskset", "-c", "0", gateway, "serve", "-c", "bench/gateway.toml", "--port", str(port)]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


if __name__ == "__main__":
    raise SystemExit(main())
