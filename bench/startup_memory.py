"""Start-up time and memory: ``gateway serve`` against bare uvicorn serving the same apps.

::

    python bench/startup_memory.py                    # 3 rounds, 100,000 mixed requests each
    python bench/startup_memory.py --rounds 5 --requests 20000
    python bench/startup_memory.py --workers 2        # supervisor and workers, both servers

Two servers, each started afresh in every round (interleaved): ``gateway serve -c
bench/gateway.toml`` (one worker) and ``uvicorn bench.apps:combined_asgi`` (the same Flask app on
plain a2wsgi and the same FastAPI app, no gateway, no access log). For each it measures

- **start-up**: from starting the process to the first 200 on ``/new/hello`` (polled every
  10 ms), which includes the interpreter's start and every import;
- **RSS at idle**: ``VmRSS`` from ``/proc/<pid>/status`` once it answers, after one request of
  each kind;
- **RSS after N mixed requests**: wrk (``-t1 -c16``, pinned to core 1) cycling through
  ``/new/hello``, ``/legacy/hello``, ``/trivial`` and a 404, in 5-second runs until N requests were
  answered; then the growth over idle.

With ``--workers N`` (N > 1) both run N worker processes (``gateway serve --workers N``,
``uvicorn --workers N``) and each RSS is reported for the supervisor (the process started) and
per worker (the mean of its worker processes), and for all of them together (with
multiprocessing's resource tracker, which both servers start). Start-up is then the time to the
first 200 from any worker.

It prints each server's medians and ranges over rounds and the gateway / uvicorn ratios. The
server is not pinned (a start-up uses whatever it can get). Exit status 1 only when a run broke.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.http_bench import (
    _UVICORN,
    _UVICORN_QUIET,
    GATEWAY,
    BenchError,
    Server,
    _serving,
    process_tree,
    run_guarded,
)
from bench.servers import HOST, free_port, wait_until_ready

UVICORN_COMBINED = Server("uvicorn", (*_UVICORN, "bench.apps:combined_asgi", *_UVICORN_QUIET))
MIXED = ("/new/hello", "/legacy/hello", "/trivial", "/not-there")
#: wrk cycles through MIXED, one path per request.
_SCRIPT = """
paths = {%s}
i = 0
request = function()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i])
end
"""


@dataclass(frozen=True, slots=True)
class Memory:
    """RSS in MiB at one moment: the supervisor (0 with one worker: there is none), the mean of
    the workers, and every process of the server together."""

    supervisor: float
    worker: float
    total: float


@dataclass(frozen=True, slots=True)
class Sample:
    startup_s: float
    idle: Memory
    loaded: Memory
    requests: int


def servers(workers: int) -> tuple[tuple[str, Server], ...]:
    """The gateway and bare uvicorn, each with ``workers`` worker processes."""
    if workers == 1:
        return (("gateway", GATEWAY), ("uvicorn", UVICORN_COMBINED))
    extra = ("--workers", str(workers))
    return (
        ("gateway", Server("gateway", (*GATEWAY.argv, *extra))),
        ("uvicorn", Server("uvicorn", (*UVICORN_COMBINED.argv, *extra))),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--requests", type=int, default=100_000, help="mixed requests per run")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per server")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.requests < 1 or args.workers < 1:
        parser.error("--rounds, --requests and --workers must be at least 1")
    return run_guarded("startup_memory", lambda wrk: _run(args, wrk))


def _run(args: argparse.Namespace, wrk: str) -> int:
    chosen = servers(args.workers)
    samples: dict[str, list[Sample]] = {name: [] for name, _ in chosen}
    with tempfile.TemporaryDirectory(prefix="startup_memory-") as scratch:
        script = Path(scratch) / "mixed.lua"
        script.write_text(_SCRIPT % ", ".join(f'"{path}"' for path in MIXED))
        for number in range(1, args.rounds + 1):
            for name, server in chosen:
                sample = _measure(server, args.workers, wrk, script, args.requests, Path(scratch))
                samples[name].append(sample)
                print(
                    f"  round {number} {name:<8} start-up {sample.startup_s:5.2f} s  "
                    f"RSS idle {sample.idle.total:6.1f} MiB  after {sample.requests} requests "
                    f"{sample.loaded.total:6.1f} MiB (all processes)",
                    flush=True,
                )
    _report(samples, args)
    return 0


def _measure(
    server: Server, workers: int, wrk: str, script: Path, requests: int, scratch: Path
) -> Sample:
    port = free_port()
    log_path = scratch / f"{server.name}-{port}.log"
    started = time.monotonic()
    with _serving(server, port, None, log_path) as process:
        startup = _first_200(process, port, log_path, started)
        for _ in range(workers):  # a new connection each: likely to reach every worker
            for path in MIXED:
                _get(port, path)
        idle = _memory(process.pid, workers)
        done = 0
        while done < requests:
            done += _wrk_requests(wrk, script, port)
        loaded = _memory(process.pid, workers)
    log_path.unlink(missing_ok=True)
    return Sample(startup, idle, loaded, done)


def _first_200(
    process: subprocess.Popen[bytes], port: int, log_path: Path, started: float
) -> float:
    # wait_until_ready polls every 50 ms; start-up wants a finer clock, so poll here first.
    deadline = started + 60
    while time.monotonic() < deadline and process.poll() is None:
        if _get(port, "/new/hello") == 200:
            return time.monotonic() - started
        time.sleep(0.01)
    wait_until_ready(process, port, "/new/hello", log_path, timeout=1)  # raises, with the log
    return time.monotonic() - started


def _get(port: int, path: str) -> int | None:
    import http.client

    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        connection.close()


def _wrk_requests(wrk: str, script: Path, port: int) -> int:
    argv = ["taskset", "-c", "1", wrk, "-t1", "-c16", "-d5s", "-s", str(script)]
    finished = subprocess.run(
        [*argv, f"http://{HOST}:{port}/"], capture_output=True, text=True, timeout=60
    )
    for line in finished.stdout.splitlines():
        if " requests in " in line:
            return int(line.split()[0])
    raise BenchError(f"{' '.join(argv)}: no request count in\n{finished.stdout}{finished.stderr}")


def _memory(pid: int, workers: int) -> Memory:
    tree = process_tree(pid)
    rss = {process: _rss_mib(process) for process in tree}
    if workers == 1:
        return Memory(supervisor=0.0, worker=rss[pid], total=sum(rss.values()))
    # The supervisor's children: its workers and multiprocessing's resource tracker (a small
    # process that imports almost nothing): the workers are the N largest.
    children = sorted(rss[process] for process in tree[1:])[-workers:]
    return Memory(rss[pid], statistics.fmean(children), sum(rss.values()))


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for process {pid}")


def _report(samples: dict[str, list[Sample]], args: argparse.Namespace) -> None:
    print(f"\n== medians over {args.rounds} round(s) (ranges in brackets) ==")
    rows: list[tuple[str, Callable[[Sample], float]]] = [
        ("start-up to first 200 (s)", lambda s: s.startup_s)
    ]
    loaded = f"after {args.requests} requests"
    if args.workers == 1:
        parts: tuple[tuple[str, Callable[[Memory], float]], ...] = (("RSS", lambda m: m.total),)
    else:
        parts = (
            ("supervisor RSS", lambda m: m.supervisor),
            ("RSS per worker", lambda m: m.worker),
            ("RSS, all processes", lambda m: m.total),
        )
    for name, part in parts:
        rows += [
            (f"{name} at idle (MiB)", lambda s, part=part: part(s.idle)),
            (f"{name} {loaded} (MiB)", lambda s, part=part: part(s.loaded)),
            (f"{name}, growth (MiB)", lambda s, part=part: part(s.loaded) - part(s.idle)),
        ]
    print(f"  {'':<48}{'gateway':>24}{'uvicorn':>24}{'ratio':>8}")
    for label, value in rows:
        cells = []
        medians = []
        for name in samples:
            values = [value(sample) for sample in samples[name]]
            medians.append(statistics.median(values))
            cells.append(f"{medians[-1]:.2f} [{min(values):.2f}-{max(values):.2f}]")
        ratio = f"{medians[0] / medians[1]:.2f}" if medians[1] else "-"
        print(f"  {label:<48}{cells[0]:>24}{cells[1]:>24}{ratio:>8}")


if __name__ == "__main__":
    sys.exit(main())
