"""Several workers on both cores: ``gateway serve --workers 2`` against gunicorn and uvicorn with
two workers each (issue 15, target 3).

::

    python bench/workers_bench.py                        # 5 rounds of 3 s per configuration
    python bench/workers_bench.py --rounds 2 --duration 2  # a smoke run

Seven configurations, measured with ``http_bench.py``'s machinery (its servers, warm-up, wrk
parsing and process-group stop), in interleaved rounds (the order reversed in even rounds):

- ``/legacy/hello``: ``gateway serve -c bench/gateway.toml --workers 2`` (JSON access log on,
  to a file) and ``gunicorn -w 2 -k sync bench.apps:flask_app`` (target: gateway >= 1.3x);
- ``/new/hello``: the same gateway, ``uvicorn --workers 2 bench.apps:fastapi_app`` with no
  access log (target: gateway >= 0.85x) and the same uvicorn with its own access log to a file,
  the like-for-like comparison (target: >= 1.0x, as for one worker);
- the gateway again on both routes with ``server.pin_workers`` (each worker on a CPU of its own,
  ``GATEWAY_SERVER__PIN_WORKERS=true``), against the same servers.

Nothing else is pinned: each server may use both cores, and so may wrk (one thread). wrk therefore
**competes with the servers for the two cores**: it takes a share of a core that grows with the
request rate, so a faster server is held back more than a slower one, and every ratio here is
pulled towards 1 (a gateway ahead of gunicorn is ahead by more than it shows). The CPU time per
request (the server's supervisor and workers together, read from ``/proc``) does not depend on
that share and is printed next to req/s; its ratio (the other server's / the gateway's, so that
above 1 favours the gateway) is the steadier reading on a shared machine. The targets are
reported, never enforced: the exit status is 1 only when a run broke.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.http_bench import (
    _UVICORN,
    _UVICORN_QUIET,
    BIN,
    GATEWAY,
    HOST,
    Case,
    PinMode,
    Server,
    WrkResult,
    cpu_ratio,
    run_guarded,
)
from bench.paired import case_lines, measure_rounds, ratio_line

WORKERS = 2
GATEWAY_WORKERS = Server("gateway", (*GATEWAY.argv, "--workers", str(WORKERS)))
#: The same with ``server.pin_workers``: each worker on a CPU of its own.
GATEWAY_PINNED = Server(
    "gateway", GATEWAY_WORKERS.argv, env=(("GATEWAY_SERVER__PIN_WORKERS", "true"),)
)
GUNICORN_WORKERS = Server(
    "gunicorn",
    (
        str(BIN / "gunicorn"),
        *("-w", str(WORKERS), "-k", "sync", "--log-level", "warning"),
        *("--bind", f"{HOST}:{{port}}", "bench.apps:flask_app"),
    ),
)
_UVICORN_WORKERS = (*_UVICORN, "--workers", str(WORKERS), "bench.apps:fastapi_app")
UVICORN_WORKERS = Server("uvicorn", (*_UVICORN_WORKERS, *_UVICORN_QUIET))
UVICORN_WORKERS_LOGGED = Server(
    "uvicorn", (*_UVICORN_WORKERS, "--log-level", "info", "--no-proxy-headers")
)

CASES = (
    Case(
        "legacy.gateway",
        "legacy",
        "gateway --workers 2  /legacy/hello",
        GATEWAY_WORKERS,
        "/legacy/hello",
    ),
    Case(
        "legacy.pinned",
        "legacy",
        "gateway, pinned workers /legacy/hello",
        GATEWAY_PINNED,
        "/legacy/hello",
    ),
    Case("legacy.gunicorn", "legacy", "gunicorn -w 2 sync", GUNICORN_WORKERS, "/legacy/hello"),
    Case("new.gateway", "new", "gateway --workers 2  /new/hello", GATEWAY_WORKERS, "/new/hello"),
    Case("new.pinned", "new", "gateway, pinned workers /new/hello", GATEWAY_PINNED, "/new/hello"),
    Case("new.uvicorn", "new", "uvicorn --workers 2, no log", UVICORN_WORKERS, "/new/hello"),
    Case(
        "new.logged", "new", "uvicorn --workers 2, access log", UVICORN_WORKERS_LOGGED, "/new/hello"
    ),
)
#: (label, gateway's case, the other server's case, target on the req/s ratio)
RATIOS = (
    ("legacy: gateway / gunicorn", "legacy.gateway", "legacy.gunicorn", 1.3),
    ("new: gateway / uvicorn, no log", "new.gateway", "new.uvicorn", 0.85),
    ("new: gateway / uvicorn, both log", "new.gateway", "new.logged", 1.0),
    ("legacy: pinned gateway / gunicorn", "legacy.pinned", "legacy.gunicorn", 1.3),
    ("new: pinned gateway / uvicorn, no log", "new.pinned", "new.uvicorn", 0.85),
    ("new: pinned gateway / uvicorn, both log", "new.pinned", "new.logged", 1.0),
)
BOTH_CORES = PinMode("unpinned", None, None, "servers and wrk free on both cores")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=3, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    # Enough for two workers to be busy at once whatever wrk's timing: gunicorn's sync workers
    # take one connection each, the rest wait in the listen queue.
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.rounds < 1 or args.connections < 1:
        parser.error("--duration, --rounds and --connections must be at least 1")
    return run_guarded("workers_bench", lambda wrk: _run(args, wrk))


def _run(args: argparse.Namespace, wrk: str) -> int:
    print(
        f"workers_bench: {args.rounds} round(s) x {len(CASES)} configurations, "
        f"{args.duration} s each, wrk -t1 -c{args.connections}, nothing pinned",
        flush=True,
    )
    runs = measure_rounds(args, wrk, CASES, (BOTH_CORES,))[BOTH_CORES.name]
    return 1 if _report(runs, args.rounds) else 0


def _report(runs: dict[str, list[WrkResult]], rounds: int) -> bool:
    """Print medians and ratios; return True if a run answered anything but 2xx."""
    print(f"\n== {BOTH_CORES.description} (median of {rounds} round(s)) ==")
    # CPU per request: the supervisor and its workers together.
    broken = case_lines(CASES, runs, width=38)
    for label, gateway, other, target in RATIOS:
        measured = list(zip(runs[gateway], runs[other], strict=True))
        ratio_line(f"{label}, req/s", [g.rps / o.rps for g, o in measured], target)
        cpu = [cpu_ratio(o, g) for g, o in measured]
        ratio_line(f"{label}, CPU/req", cpu, target)
    print(
        "  CPU/req ratios: the other server's CPU per request / the gateway's (above 1 favours "
        "the gateway).\n  wrk shares the two cores with the server: req/s ratios are pulled "
        "towards 1, CPU/req ratios are not"
    )
    return broken


if __name__ == "__main__":
    sys.exit(main())
