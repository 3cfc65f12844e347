"""The same gateway on different HTTP servers: which one should ``gateway serve`` run?

::

    python bench/servers_bench.py                      # 5 rounds x 3 s per configuration
    python bench/servers_bench.py --rounds 2 --duration 2 --routes /trivial /legacy/hello

One gateway, built from ``bench/gateway.toml``, served four ways:

- ``gateway serve``, as shipped: uvicorn with the gateway's own httptools protocol
  (``gateway.http_protocol``: head size and time limits, refusals counted in the metrics);
- uvicorn with its stock httptools protocol, serving ``gateway.asgi:app``;
- uvicorn with h11 (pure Python), the same;
- granian in ASGI mode (the ``bench`` extra; skipped, saying so, when it is not installed).

The last three read the config through ``GATEWAY_CONFIG``, run the lifespan, and have their own
access logs and proxy-header handling off, as ``gateway serve`` has; the gateway's JSON access
line is written by all four. Routes: ``/trivial`` (a raw ASGI endpoint: the server and the
gateway, nothing else), ``/new/hello`` (FastAPI) and ``/legacy/hello`` (Flask).

Every configuration is measured as ``http_bench.py`` measures (wrk, warm-up, pinned and unpinned,
interleaved rounds, the order reversed in even rounds), with the server's CPU time per request
read from ``/proc`` (all its processes: granian serves from a child). Printed per pin mode and
route: each server's median req/s, p99 and CPU µs per request, then each server against
``gateway serve`` within each round: req/s ratio (above 1: faster) and CPU ratio (below 1:
cheaper), medians with their range. Nothing is judged; the exit status is non-zero only when a
run broke (a server that did not start, wrk failing, non-2xx answers).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.http_bench import (
    _GRANIAN,
    _UVICORN,
    _UVICORN_QUIET,
    BENCH_CONFIG,
    GATEWAY,
    PIN_MODES,
    Case,
    Server,
    WrkResult,
    cpu_ratio,
    granian_missing,
    run_guarded,
)
from bench.paired import case_lines, measure_rounds

ROUTES = ("/trivial", "/new/hello", "/legacy/hello")
_CONFIG_ENV = (("GATEWAY_CONFIG", BENCH_CONFIG),)
_APP = "gateway.asgi:app"


def _uvicorn(http: str) -> Server:
    return Server(
        f"uvicorn-{http}",
        (*_UVICORN, _APP, "--http", http, "--lifespan", "on", *_UVICORN_QUIET),
        env=_CONFIG_ENV,
    )


#: ``gateway serve`` first: every other server is compared with it.
SERVE = "gateway serve"
SERVERS = {
    SERVE: GATEWAY,
    "uvicorn httptools": _uvicorn("httptools"),
    "uvicorn h11": _uvicorn("h11"),
    "granian ASGI": Server(
        "granian-asgi",
        (*_GRANIAN, "--interface", "asgi", "--no-ws", "--log-level", "warning", _APP),
        env=_CONFIG_ENV,
    ),
}


def cases(routes: Sequence[str], servers: Sequence[str]) -> tuple[Case, ...]:
    """One case per route and server, keyed ``route|server``."""
    return tuple(
        Case(f"{route}|{name}", route, name, SERVERS[name], route)
        for route in routes
        for name in servers
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="servers_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=3, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--routes", nargs="+", choices=ROUTES, default=list(ROUTES))
    args = parser.parse_args(argv)
    if args.duration < 1 or args.rounds < 1 or args.connections < 1:
        parser.error("--duration, --rounds and --connections must be at least 1")
    servers = [name for name in SERVERS if name != "granian ASGI"]
    if not granian_missing("the gateway on granian is"):
        servers.append("granian ASGI")
    args.servers = servers
    args.cases = cases(args.routes, servers)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def measure(wrk: str) -> int:
        runs = measure_rounds(args, wrk, args.cases)
        broken = False
        for mode in PIN_MODES:
            print(f"\n== {mode.name}: {mode.description} (median of {args.rounds} round(s)) ==")
            for route in args.routes:
                broken |= _report_route(route, args.servers, runs[mode.name])
        return 1 if broken else 0

    return run_guarded("servers_bench", measure)


def _report_route(route: str, servers: Sequence[str], runs: dict[str, list[WrkResult]]) -> bool:
    """Print one route's servers and their ratios to ``gateway serve``; True if a run broke."""
    print(f"\n{route}")
    broken = case_lines(cases([route], servers), runs, width=20)
    reference = runs[f"{route}|{SERVE}"]
    for name in (name for name in servers if name != SERVE):
        paired = list(zip(runs[f"{route}|{name}"], reference, strict=True))
        rps = _ratio([r.rps / ref.rps for r, ref in paired])
        cpu = _ratio([cpu_ratio(r, ref) for r, ref in paired])
        print(f"    {name} / {SERVE}: req/s {rps}, CPU per request {cpu}")
    return broken


def _ratio(per_round: list[float]) -> str:
    median = statistics.median(per_round)
    return f"x{median:.2f} ({min(per_round):.2f}-{max(per_round):.2f})"


if __name__ == "__main__":
    raise SystemExit(main())
