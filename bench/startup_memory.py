"""Start-up time and memory: ``gateway serve`` against bare uvicorn serving the same apps.

::

    python bench/startup_memory.py                    # 3 rounds, 100,000 mixed requests each
    python bench/startup_memory.py --rounds 5 --requests 20000

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
from collections.abc import Sequence
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
    run_guarded,
)
from bench.servers import HOST, free_port, wait_until_ready

UVICORN_COMBINED = Server("uvicorn", (*_UVICORN, "bench.apps:combined_asgi", *_UVICORN_QUIET))
SERVERS = (("gateway", GATEWAY), ("uvicorn", UVICORN_COMBINED))
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
class Sample:
    startup_s: float
    idle_mib: float
    loaded_mib: float
    requests: int


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--requests", type=int, default=100_000, help="mixed requests per run")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.requests < 1:
        parser.error("--rounds and --requests must be at least 1")
    return run_guarded("startup_memory", lambda wrk: _run(args, wrk))


def _run(args: argparse.Namespace, wrk: str) -> int:
    samples: dict[str, list[Sample]] = {name: [] for name, _ in SERVERS}
    with tempfile.TemporaryDirectory(prefix="startup_memory-") as scratch:
        script = Path(scratch) / "mixed.lua"
        script.write_text(_SCRIPT % ", ".join(f'"{path}"' for path in MIXED))
        for number in range(1, args.rounds + 1):
            for name, server in SERVERS:
                sample = _measure(server, wrk, script, args.requests, Path(scratch))
                samples[name].append(sample)
                print(
                    f"  round {number} {name:<8} start-up {sample.startup_s:5.2f} s  "
                    f"RSS idle {sample.idle_mib:6.1f} MiB  after {sample.requests} requests "
                    f"{sample.loaded_mib:6.1f} MiB",
                    flush=True,
                )
    _report(samples, args)
    return 0


def _measure(server: Server, wrk: str, script: Path, requests: int, scratch: Path) -> Sample:
    port = free_port()
    log_path = scratch / f"{server.name}-{port}.log"
    started = time.monotonic()
    with _serving(server, port, None, log_path) as process:
        startup = _first_200(process, port, log_path, started)
        for path in MIXED:
            _get(port, path)
        idle = _rss_mib(process.pid)
        done = 0
        while done < requests:
            done += _wrk_requests(wrk, script, port)
        loaded = _rss_mib(process.pid)
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


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for process {pid}")


def _report(samples: dict[str, list[Sample]], args: argparse.Namespace) -> None:
    print(f"\n== medians over {args.rounds} round(s) (ranges in brackets) ==")
    rows = (
        ("start-up to first 200 (s)", lambda s: s.startup_s),
        ("RSS at idle (MiB)", lambda s: s.idle_mib),
        (f"RSS after {args.requests} mixed requests (MiB)", lambda s: s.loaded_mib),
        ("growth (MiB)", lambda s: s.loaded_mib - s.idle_mib),
    )
    print(f"  {'':<42}{'gateway':>20}{'uvicorn':>20}{'ratio':>8}")
    for label, value in rows:
        cells = []
        medians = []
        for name, _ in SERVERS:
            values = [value(sample) for sample in samples[name]]
            medians.append(statistics.median(values))
            cells.append(f"{medians[-1]:.2f} [{min(values):.2f}-{max(values):.2f}]")
        ratio = f"{medians[0] / medians[1]:.2f}" if medians[1] else "-"
        print(f"  {label:<42}{cells[0]:>20}{cells[1]:>20}{ratio:>8}")


if __name__ == "__main__":
    sys.exit(main())
