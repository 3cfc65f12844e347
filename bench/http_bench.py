"""HTTP throughput of the gateway against the servers it replaces, measured with wrk.

::

    python bench/http_bench.py                 # 5 rounds of 3 s per configuration (~5.5 min)
    python bench/http_bench.py --quick         # 1 round of 3 s: a smoke check
    git worktree add /tmp/before HEAD~1 && python bench/http_bench.py --baseline /tmp/before
                                               # this tree against an earlier one, interleaved

Each configuration is one server process on a free 127.0.0.1 port: started, polled until its
URL answers 200, warmed up with 1 s of wrk, measured with ``wrk -t1 -c16 -d{duration}s
--latency``, then stopped (SIGTERM to its process group, SIGKILL after a grace period). Rounds
interleave the configurations (round 1: A, B, C...; round 2: A, B, C...) so slow drifts of the
machine fall on all of them alike. The report gives each configuration's median over rounds;
a ratio is taken within each round, where its two sides ran back to back, and the median of
those per-round ratios is judged against its target.

Everything runs twice: *pinned* (the server on core 0 with ``taskset -c 0``, wrk on core 1: the
server gets exactly one core, so 1/throughput is CPU time per request) and *unpinned* (the server
may use both cores; wrk stays pinned to core 1, so only the server's placement changes).

The gateway writes its JSON access log (one line per request) to a file, so logging is paid for;
the direct servers run with no access log, which makes the comparison stricter. ``GATEWAY_*``
variables are removed from the servers' environment so the config file alone decides. Flask on
granian's WSGI server is measured when granian (the ``bench`` extra) is installed, and skipped,
saying so, when it is not.
Raw numbers go to ``bench/results/http-<timestamp>.json``.

``--baseline DIR`` also serves the gateway from another checkout (a ``git worktree`` of an
earlier commit, run from that folder) in the same rounds, and reports this tree's throughput over
that one's for the new, legacy and trivial routes: a change's cost, in one interleaved run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.servers import HOST, ServerNotReady, free_port, wait_until_ready

REPO = Path(__file__).resolve().parent.parent
BENCH_CONFIG = "bench/gateway.toml"
RESULTS = REPO / "bench" / "results"
BIN = Path(sys.executable).parent

WARMUP_SECONDS = 1
START_TIMEOUT = 20.0
STOP_GRACE = 10.0


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    #: The command line, with ``{port}`` where the port goes.
    argv: tuple[str, ...]
    #: Where it runs (``python -m`` puts this first on ``sys.path``): the repository, or a
    #: baseline checkout.
    cwd: Path = REPO
    #: Environment variables set for this server (after ``GATEWAY_*`` are dropped).
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Case:
    key: str
    group: str
    label: str
    server: Server
    path: str


@dataclass(frozen=True, slots=True)
class PinMode:
    name: str
    #: CPUs for ``taskset -c`` (``None``: not pinned).
    server_cpus: str | None
    wrk_cpus: str | None
    description: str


@dataclass(frozen=True, slots=True)
class Ratio:
    label: str
    numerator: str
    denominator: str
    #: ``None``: reported for information, no target.
    target: float | None


@dataclass(frozen=True, slots=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    #: The server process's CPU time (user + system, all threads) per request during the
    #: measurement, in µs: steadier than req/s on a shared machine.
    cpu_us: float | None = None


def cpu_ratio(numerator: WrkResult, denominator: WrkResult) -> float:
    """``numerator``'s CPU time per request over ``denominator``'s (an unread one counts as 0
    over 1, so a broken reading shows as a ratio of 0, never a division by zero)."""
    return (numerator.cpu_us or 0.0) / (denominator.cpu_us or 1.0)


GATEWAY = Server("gateway", (str(BIN / "gateway"), "serve", "-c", BENCH_CONFIG, "--port", "{port}"))
_UVICORN = (str(BIN / "uvicorn"), "--host", HOST, "--port", "{port}")
# --no-proxy-headers: `gateway serve` runs uvicorn without the proxy-headers middleware when no
# proxy is trusted (the default), so the direct servers do too.
_UVICORN_QUIET = ("--no-access-log", "--log-level", "warning", "--no-proxy-headers")
UVICORN_FASTAPI = Server("uvicorn", (*_UVICORN, "bench.apps:fastapi_app", *_UVICORN_QUIET))
# The same, with uvicorn's own access log on (one line per request, to the same kind of file the
# gateway's goes to): the like-for-like comparison, both sides logging every request.
UVICORN_FASTAPI_LOGGED = Server(
    "uvicorn", (*_UVICORN, "bench.apps:fastapi_app", "--log-level", "info", "--no-proxy-headers")
)
UVICORN_A2WSGI = Server("uvicorn", (*_UVICORN, "bench.apps:plain_a2wsgi", *_UVICORN_QUIET))
UVICORN_TRIVIAL = Server("uvicorn", (*_UVICORN, "bench.apps:trivial_asgi", *_UVICORN_QUIET))
_GUNICORN_SYNC = ("-w", "1", "-k", "sync", "--log-level", "warning")
GUNICORN = Server(
    "gunicorn",
    (str(BIN / "gunicorn"), *_GUNICORN_SYNC, "--bind", f"{HOST}:{{port}}", "bench.apps:flask_app"),
)
# granian (the bench extra: pip install -e '.[bench]'), one worker process, its own defaults
# otherwise: the fastest WSGI server there is, as it ships. Its workers are child processes, which
# _cpu_seconds counts with the rest of the server's process tree.
GRANIAN = BIN / "granian"
_GRANIAN = (str(GRANIAN), "--host", HOST, "--port", "{port}", "--workers", "1")
GRANIAN_WSGI = Server(
    "granian", (*_GRANIAN, "--interface", "wsgi", "--log-level", "warning", "bench.apps:flask_app")
)

NEW, LEGACY, TRIVIAL = "new route", "legacy route", "trivial"
CASES = (
    Case("new.gateway", NEW, "gateway  /new/hello", GATEWAY, "/new/hello"),
    Case("new.direct", NEW, "uvicorn + FastAPI, direct", UVICORN_FASTAPI, "/new/hello"),
    Case("new.logged", NEW, "  the same, access log on", UVICORN_FASTAPI_LOGGED, "/new/hello"),
    Case("new.canary", NEW, "gateway  /canary/flagged", GATEWAY, "/canary/flagged"),
    Case("new.unflagged", NEW, "gateway  /canary/plain", GATEWAY, "/canary/plain"),
    Case("legacy.gateway", LEGACY, "gateway  /legacy/hello", GATEWAY, "/legacy/hello"),
    Case("legacy.gunicorn", LEGACY, "gunicorn sync, 1 worker", GUNICORN, "/legacy/hello"),
    Case("legacy.a2wsgi", LEGACY, "uvicorn + plain a2wsgi", UVICORN_A2WSGI, "/legacy/hello"),
    Case("legacy.granian", LEGACY, "granian WSGI, 1 worker", GRANIAN_WSGI, "/legacy/hello"),
    Case("trivial.gateway", TRIVIAL, "gateway  /trivial", GATEWAY, "/trivial"),
    Case("trivial.direct", TRIVIAL, "uvicorn + trivial_asgi, direct", UVICORN_TRIVIAL, "/trivial"),
)

RATIOS = (
    Ratio("new route / direct, both logging", "new.gateway", "new.logged", 0.90),
    Ratio("new route / direct, no log", "new.gateway", "new.direct", None),
    Ratio("canary route / unflagged", "new.canary", "new.unflagged", 0.97),
    Ratio("legacy route / gunicorn", "legacy.gateway", "legacy.gunicorn", 0.90),
    Ratio("legacy route / plain a2wsgi", "legacy.gateway", "legacy.a2wsgi", None),
    # Issue 15's second target: the legacy route at least 0.7x Flask on granian's WSGI server.
    Ratio("legacy route / granian WSGI", "legacy.gateway", "legacy.granian", 0.70),
)


def granian_missing(comparison: str) -> bool:
    """True (after saying what is skipped) when granian, a bench-only extra, is not installed."""
    if GRANIAN.exists():
        return False
    print(f"granian is not installed (pip install -e '.[bench]'): {comparison} skipped", flush=True)
    return True


def baseline(directory: Path) -> tuple[tuple[Case, ...], tuple[Ratio, ...]]:
    """Cases that serve the gateway from another checkout, and this tree's ratios over them."""
    server = Server(
        "gateway-baseline",
        (sys.executable, "-m", "gateway.cli", "serve", "-c", BENCH_CONFIG, "--port", "{port}"),
        cwd=directory,
    )
    cases, ratios = [], []
    for key, group, path in (
        ("new", NEW, "/new/hello"),
        ("legacy", LEGACY, "/legacy/hello"),
        ("trivial", TRIVIAL, "/trivial"),
    ):
        cases.append(Case(f"{key}.baseline", group, f"baseline {path}", server, path))
        ratios.append(Ratio(f"{key} route / baseline", f"{key}.gateway", f"{key}.baseline", None))
    return tuple(cases), tuple(ratios)


PIN_MODES = (
    PinMode("pinned", "0", "1", "server pinned to core 0, wrk pinned to core 1"),
    PinMode("unpinned", None, "1", "server free on both cores, wrk pinned to core 1"),
)


class BenchError(Exception):
    """A measurement could not be made; the message says why (and shows the server log)."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    # Stopping the benchmark must stop its servers: turn SIGTERM into an exception so the
    # ``finally`` blocks run, and take SIGINT back when a shell started us with it ignored.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _check_machine()
        wrk = _ensure_wrk()
        return _run(args, wrk)
    except BenchError as exc:
        print(f"\nhttp_bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nhttp_bench: interrupted; servers stopped", file=sys.stderr)
        return 130


def run_guarded(name: str, measure: Callable[[str], int]) -> int:
    """``measure(wrk)`` for another benchmark script ``name``: SIGTERM still stops its servers,
    a broken run is one line on stderr and status 1, Ctrl-C status 130."""
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        _check_machine()
        return measure(_ensure_wrk())
    except BenchError as exc:
        print(f"\n{name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted; servers stopped", file=sys.stderr)
        return 130


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Five short rounds rather than three long ones: on a noisy VM a median of five shrugs off
    # two bad rounds, a median of three only one. About 5.5 minutes in all.
    parser.add_argument("--duration", type=int, default=3, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s: a smoke check")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="also serve the gateway from this checkout and compare (e.g. a git worktree)",
    )
    args = parser.parse_args(argv)
    args.cases, args.ratios = CASES, RATIOS
    if granian_missing("the legacy route / granian WSGI comparison is"):
        args.cases = tuple(case for case in CASES if case.server != GRANIAN_WSGI)
        args.ratios = tuple(ratio for ratio in RATIOS if ratio.denominator != "legacy.granian")
    if args.baseline is not None:
        if not (args.baseline / "gateway" / "cli.py").is_file():
            parser.error(f"--baseline {args.baseline}: no gateway/cli.py there")
        cases, ratios = baseline(args.baseline.resolve())
        args.cases, args.ratios = args.cases + cases, args.ratios + ratios
    if args.quick:
        args.duration, args.rounds = 3, 1
    if args.duration < 1 or args.rounds < 1 or args.connections < 1:
        parser.error("--duration, --rounds and --connections must be at least 1")
    return args


def _check_machine() -> None:
    if shutil.which("taskset") is None:
        raise BenchError("taskset (util-linux) is needed to pin processes to cores")
    cpus = os.sched_getaffinity(0)
    if not {0, 1} <= cpus:
        raise BenchError(f"cores 0 and 1 are needed for pinning; this process may use {cpus}")
    for server in (GATEWAY, UVICORN_FASTAPI, GUNICORN):
        if not Path(server.argv[0]).exists():
            raise BenchError(f"{server.argv[0]} not found: activate the project's virtualenv")


def _ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is not None:
        return wrk
    command = ["apt-get", "install", "-y", "wrk"]
    print(f"wrk not found; installing it: {' '.join(command)}", flush=True)
    try:
        subprocess.run(command, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BenchError(
            f"could not install wrk ({exc}); install it yourself (apt-get install wrk) and rerun"
        ) from None
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("apt-get reported success but wrk is still not on PATH")
    return wrk


def _run(args: argparse.Namespace, wrk: str) -> int:
    runs: dict[str, dict[str, list[WrkResult]]] = {
        m.name: {c.key: [] for c in args.cases} for m in PIN_MODES
    }
    print(
        f"http_bench: {args.rounds} round(s) x {len(PIN_MODES)} pin modes x {len(args.cases)} "
        f"configurations, {args.duration} s each after {WARMUP_SECONDS} s warm-up, "
        f"wrk -t1 -c{args.connections}",
        flush=True,
    )
    started = time.monotonic()
    try:
        _measure_all(args, wrk, runs)
    except BenchError:
        if any(results for by_case in runs.values() for results in by_case.values()):
            path = _write_results(args, runs, None)
            print(f"raw numbers so far: {path.relative_to(REPO)}", file=sys.stderr)
        raise
    print(f"measured in {time.monotonic() - started:.0f} s")

    analyses = {mode.name: _analyze(runs[mode.name], args.ratios) for mode in PIN_MODES}
    broken = False
    for mode in PIN_MODES:
        broken |= _report(mode, analyses[mode.name], args)
    path = _write_results(args, runs, analyses)
    print(f"\nraw numbers: {path.relative_to(REPO)}")
    return 1 if broken else 0


def _measure_all(
    args: argparse.Namespace,
    wrk: str,
    runs: dict[str, dict[str, list[WrkResult]]],
    modes: Sequence[PinMode] = PIN_MODES,
) -> None:
    """Round after round, every pin mode (of ``modes``) and configuration; results go into
    ``runs``."""
    total = args.rounds * len(modes) * len(args.cases)
    done = 0
    with tempfile.TemporaryDirectory(prefix="http_bench-") as scratch:
        for round_number in range(1, args.rounds + 1):
            for mode in modes:
                for case in args.cases:
                    done += 1
                    result = _measure(case, mode, args, wrk, Path(scratch))
                    runs[mode.name][case.key].append(result)
                    print(
                        f"  [{done:>2}/{total}] round {round_number} {mode.name:<8} "
                        f"{case.key:<16} {result.rps:>9.0f} req/s  p50 {result.p50_ms:6.2f} ms  "
                        f"p99 {result.p99_ms:6.2f} ms{_problems(result)}",
                        flush=True,
                    )


def _measure(
    case: Case, mode: PinMode, args: argparse.Namespace, wrk: str, scratch: Path
) -> WrkResult:
    port = free_port()
    url = f"http://{HOST}:{port}{case.path}"
    log_path = scratch / f"{case.server.name}-{port}.log"
    with _serving(case.server, port, mode.server_cpus, log_path) as process:
        try:
            wait_until_ready(process, port, case.path, log_path, timeout=START_TIMEOUT)
        except ServerNotReady as exc:
            raise BenchError(str(exc)) from None
        _wrk(wrk, url, WARMUP_SECONDS, args.connections, mode.wrk_cpus)
        cpu_before = _cpu_seconds(process.pid)
        output = _wrk(wrk, url, args.duration, args.connections, mode.wrk_cpus)
        cpu = _cpu_seconds(process.pid) - cpu_before
    log_path.unlink(missing_ok=True)  # the gateway's access log: megabytes per run
    try:
        result = parse_wrk(output)
    except ValueError as exc:
        raise BenchError(f"{case.key}: cannot read wrk's output ({exc}):\n{output}") from None
    return replace(result, cpu_us=cpu / result.requests * 1e6 if result.requests else None)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and its descendants (every thread; ``taskset``
    execs the server, so its pid is the server's; worker processes are its children), from
    ``/proc``."""
    total = 0.0
    for process in process_tree(pid):
        with suppress(OSError):
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
            # utime and stime are fields 14 and 15 of stat(5); here 0-based after the name.
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants, parents first (a supervisor, then its workers)."""
    tree, index = [pid], 0
    while index < len(tree):
        with suppress(OSError):
            for task in Path(f"/proc/{tree[index]}/task").iterdir():
                tree.extend(int(child) for child in (task / "children").read_text().split())
        index += 1
    return tree


@contextmanager
def _serving(
    server: Server, port: int, cpus: str | None, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    argv = [part.format(port=port) for part in server.argv]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    env = {name: value for name, value in os.environ.items() if not name.startswith("GATEWAY_")}
    env.update(server.env)
    # stdout goes to a file, never to a pipe nobody reads: the gateway's access log would block
    # on a full pipe, and writing it is part of what is measured.
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=server.cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (gunicorn's worker too), SIGKILL it if it lingers."""
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            print(f"  server {process.pid} ignored SIGTERM; killing it", flush=True)
    # The leader may be gone while a child (a worker) still lives: kill whatever is left.
    _signal_group(process, signal.SIGKILL)
    process.wait()


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    # start_new_session made the server the leader of its own group, whose id is its pid.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _wrk(wrk: str, url: str, seconds: int, connections: int, cpus: str | None) -> str:
    argv = [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if cpus is not None:
        argv = ["taskset", "-c", cpus, *argv]
    finished = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
    if finished.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed:\n{finished.stdout}{finished.stderr}")
    return finished.stdout


_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_PERCENTILE = re.compile(r"^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
_NON_2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def parse_wrk(output: str) -> WrkResult:
    """Read requests/s, p50 and p99 (``--latency``) and error counts from wrk's report."""
    rps = _RPS.search(output)
    total = _TOTAL.search(output)
    percentiles = {int(p): float(v) * _UNITS_MS[unit] for p, v, unit in _PERCENTILE.findall(output)}
    if rps is None or total is None or set(percentiles) != {50, 99}:
        raise ValueError("no Requests/sec, request count or 50%/99% latency lines")
    non_2xx = _NON_2XX.search(output)
    socket_errors = _SOCKET_ERRORS.search(output)
    return WrkResult(
        rps=float(rps.group(1)),
        p50_ms=percentiles[50],
        p99_ms=percentiles[99],
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(map(int, socket_errors.groups())) if socket_errors else 0,
    )


def _problems(result: WrkResult) -> str:
    notes = []
    if result.non_2xx:
        notes.append(f"{result.non_2xx} non-2xx")
    if result.socket_errors:
        notes.append(f"{result.socket_errors} socket errors")
    return f"  ({', '.join(notes)})" if notes else ""


def _analyze(by_case: dict[str, list[WrkResult]], ratios: Sequence[Ratio]) -> dict[str, Any]:
    """Medians per configuration; ratios and overhead per round (paired in time), then medians.

    The two sides of a ratio run back to back in each round, so a ratio taken within a round
    sees the same machine weather on both sides; its median over rounds is what is judged.
    """
    cases = {}
    for key, results in by_case.items():
        rates = [r.rps for r in results]
        median_rps = statistics.median(rates)
        cases[key] = {
            "rps": median_rps,
            "p50_ms": statistics.median(r.p50_ms for r in results),
            "p99_ms": statistics.median(r.p99_ms for r in results),
            # Spread between rounds, as a share of the median: how far to trust a ratio.
            "spread": (max(rates) - min(rates)) / median_rps if median_rps else 0.0,
            "non_2xx": sum(r.non_2xx for r in results),
            "socket_errors": sum(r.socket_errors for r in results),
        }
    by_label = {}
    for ratio in ratios:
        pairs = zip(by_case[ratio.numerator], by_case[ratio.denominator], strict=True)
        per_round = [top.rps / bottom.rps for top, bottom in pairs]
        by_label[ratio.label] = {
            "median": statistics.median(per_round),
            "min": min(per_round),
            "max": max(per_round),
            "per_round": per_round,
            "target": ratio.target,
        }
    pairs = zip(by_case["trivial.gateway"], by_case["trivial.direct"], strict=True)
    overhead = [(1 / gateway.rps - 1 / direct.rps) * 1e6 for gateway, direct in pairs]
    return {
        "cases": cases,
        "ratios": by_label,
        "trivial_overhead_us": {"median": statistics.median(overhead), "per_round": overhead},
    }


def _report(mode: PinMode, analysis: dict[str, Any], args: argparse.Namespace) -> bool:
    """Print one pin mode's tables; return True if a run was broken (non-2xx answers, socket
    errors). A missed target is reported (FAIL), never an exit status: the numbers move with
    the machine, and a benchmark that fails on a busy day teaches people to ignore it."""
    rounds = f"median of {args.rounds} rounds" if args.rounds > 1 else "1 round"
    print(f"\n== {mode.name}: {mode.description} ({rounds}, {args.duration} s each) ==")
    print(f"{'':<13}{'configuration':<31}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'spread':>8}")
    group = ""
    broken = False
    for case in args.cases:
        row = analysis["cases"][case.key]
        shown_group = case.group if case.group != group else ""
        group = case.group
        problems = []
        broken |= bool(row["non_2xx"] or row["socket_errors"])
        if row["non_2xx"]:
            problems.append(f"{row['non_2xx']} non-2xx!")
        if row["socket_errors"]:
            problems.append(f"{row['socket_errors']} socket errors")
        spread = f"{row['spread']:>7.0%}" if args.rounds > 1 else f"{'-':>7}"
        print(
            f"{shown_group:<13}{case.label:<31}{row['rps']:>9.0f}{row['p50_ms']:>9.2f}"
            f"{row['p99_ms']:>9.2f}{spread} {' '.join(problems)}".rstrip()
        )
    print(
        "gateway: JSON access log on, written to a file; direct servers: no access log, except "
        "the FastAPI one marked 'access log on' (uvicorn's own, to a file)"
    )

    print(f"\n{'ratio of req/s':<34}{'median':>7}{'range':>13}  {'target':<8}result")
    for label, ratio in analysis["ratios"].items():
        if ratio["target"] is None:
            target, verdict = "-", "(information)"
        else:
            target = f">= {ratio['target']:.2f}"
            verdict = "PASS" if ratio["median"] >= ratio["target"] else "FAIL"
        spread = f"{ratio['min']:.2f}-{ratio['max']:.2f}" if args.rounds > 1 else "-"
        print(f"{label:<34}{ratio['median']:>7.2f}{spread:>13}  {target:<8}{verdict}")

    overhead = analysis["trivial_overhead_us"]
    if mode.server_cpus is not None:
        note = "CPU time per request on one core"
    else:
        note = "not CPU time: the server may use two cores"
    rounds_shown = ", ".join(f"{value:.1f}" for value in overhead["per_round"])
    print(
        f"trivial endpoint, gateway overhead: {overhead['median']:.1f} µs/request ({note}; "
        f"per round: {rounds_shown})"
    )
    return broken


def _write_results(
    args: argparse.Namespace,
    runs: dict[str, dict[str, list[WrkResult]]],
    analyses: dict[str, dict[str, Any]] | None,
) -> Path:
    """Write the raw numbers; ``analyses`` is ``None`` when the run stopped part-way."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"http-{stamp}.json"
    document: dict[str, Any] = {
        "created": stamp,
        "complete": analyses is not None,
        "settings": {
            "duration_s": args.duration,
            "rounds": args.rounds,
            "connections": args.connections,
            "warmup_s": WARMUP_SECONDS,
            "quick": args.quick,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "commit": _git("rev-parse", "HEAD"),
            "uncommitted_changes": bool(_git("status", "--porcelain")),
        },
        "pin_modes": {m.name: asdict(m) for m in PIN_MODES},
        "cases": {
            c.key: {"label": c.label, "path": c.path, "argv": c.server.argv} for c in args.cases
        },
        "runs": {
            mode: {k: [asdict(r) for r in v] for k, v in by_case.items()}
            for mode, by_case in runs.items()
        },
        "results": analyses,
    }
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def _git(*args: str) -> str:
    """Read-only git queries for the results file; empty when git is unavailable."""
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


if __name__ == "__main__":
    raise SystemExit(main())
