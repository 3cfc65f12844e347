"""Where a route's CPU goes: py-spy samples of ``gateway serve`` under wrk, by thread and module.

::

    python bench/profile_bench.py                           # /trivial, /new/hello, /legacy/hello
    python bench/profile_bench.py --path /legacy/hello --seconds 20 --top 25
    python bench/profile_bench.py --keep /tmp/profiles      # keep py-spy's raw (collapsed) stacks

The gateway (``bench/gateway.toml``) is served on core 0, warmed up, and loaded by wrk on core 1
(``-c16``) while ``py-spy record --threads --nonblocking`` samples it. Every sample's innermost
frame is charged to its thread (``loop``: the event loop; ``legacy``: the Flask threads;
``log-flush``: the access log's writer) and to a group: the gateway's own modules one by one,
then uvicorn, flask, werkzeug, asyncio, threading and the rest by package. Samples whose innermost
frame is a thread waiting (the event loop in ``epoll``, a pool thread waiting for work, a
condition) are idle and left out, so the shares are of busy CPU; with the server on one core,
a share times the server's µs per request (printed) is that group's µs per request.

This complements ``ablation_bench.py`` (what switching a layer off saves) with what each module
costs in place, and it sees inside the legacy hand-off, which no ablation can switch off. py-spy
comes with the ``bench`` extra (``pip install -e '.[bench]'``). Exit status 1 when a run broke.
"""

from __future__ import annotations

import argparse
import collections
import inspect
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.http_bench import (
    GATEWAY,
    WARMUP_SECONDS,
    BenchError,
    _serving,
    _wrk,
    parse_wrk,
    run_guarded,
)
from bench.servers import HOST, free_port, wait_until_ready
from gateway.adapters.thread_pool import ThreadPool

PATHS = ("/trivial", "/new/hello", "/legacy/hello")
SAMPLE_RATE = 500
#: Innermost frames of a thread that is waiting, not working.
_IDLE = (
    "Runner.run (asyncio/runners.py",  # the event loop in epoll_wait (py-spy shows the caller)
    "Condition.wait (",
    "Event.wait (",
)


def _waiting_for_work() -> str:
    """The innermost frame of a legacy thread waiting for work: the queue's ``get()`` line of
    ``ThreadPool._work`` (a C call, so py-spy shows the line that made it)."""
    lines, first = inspect.getsourcelines(ThreadPool._work)
    offset = next(index for index, line in enumerate(lines) if "self._queue.get()" in line)
    return f"ThreadPool._work (gateway/adapters/thread_pool.py:{first + offset})"


_WAITING_FOR_WORK = _waiting_for_work()
_PACKAGES = (
    "uvicorn",
    "starlette",
    "fastapi",
    "pydantic",
    "flask",
    "werkzeug",
    "structlog",
    "a2wsgi",
    "prometheus_client",
    "asyncio",
    "concurrent",
)
_FRAME_FILE = re.compile(r"\(([^()]*?):\d+\)$")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="profile_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--path", action="append", help=f"route(s) to profile (default {PATHS})")
    parser.add_argument("--seconds", type=int, default=10, help="seconds of sampling per route")
    parser.add_argument("--top", type=int, default=18, help="groups shown per route")
    parser.add_argument(
        "--gil",
        action="store_true",
        help="only samples of the thread holding the GIL (leaves out threads waiting for it)",
    )
    parser.add_argument("--keep", type=Path, help="a folder to keep py-spy's raw stacks in")
    args = parser.parse_args(argv)
    return run_guarded("profile_bench", lambda wrk: _run(args, wrk))


def _run(args: argparse.Namespace, wrk: str) -> int:
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        raise BenchError("py-spy is not installed: pip install -e '.[bench]'")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="profile-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    for path in args.path or PATHS:
        raw = folder / f"{path.strip('/').replace('/', '_')}.txt"
        rps = _record(py_spy, wrk, path, args.seconds, raw, ("--gil",) if args.gil else ())
        print(f"\n{path}: {rps:,.0f} req/s on one core = {1e6 / rps:.1f} µs per request")
        _print_shares(summarise(raw.read_text().splitlines()), 1e6 / rps, args.top)
    if args.keep is None:
        shutil.rmtree(folder)
    return 0


def _record(
    py_spy: str, wrk: str, path: str, seconds: int, raw: Path, extra: tuple[str, ...]
) -> float:
    port = free_port()
    url = f"http://{HOST}:{port}{path}"
    log = raw.with_suffix(".log")
    with _serving(GATEWAY, port, "0", log) as server:
        wait_until_ready(server, port, path, log)
        _wrk(wrk, url, WARMUP_SECONDS, 16, "1")
        outcome: dict[str, str] = {}
        load = threading.Thread(
            target=lambda: outcome.update(out=_wrk(wrk, url, seconds + 2, 16, "1"))
        )
        load.start()
        record = ("record", "-p", str(server.pid), "-d", str(seconds), "-r", str(SAMPLE_RATE))
        sampled = ("-f", "raw", "-o", str(raw), "--threads", "--nonblocking", *extra)
        spy = subprocess.run(
            [py_spy, *record, *sampled],
            capture_output=True,
            text=True,
        )
        load.join()
    if spy.returncode != 0 or not raw.exists():
        raise BenchError(f"py-spy failed (root or ptrace rights needed):\n{spy.stderr}")
    return parse_wrk(outcome["out"]).rps


def summarise(lines: Iterable[str]) -> collections.Counter[tuple[str, str]]:
    """Busy samples per (thread, group), from py-spy's raw format: ``frame;frame;... count``,
    the first frame naming the thread (``--threads``)."""
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not count.isdigit():
            # --nonblocking reads the target's memory while it runs, so a frame's name is now
            # and then torn (seen: an access line's text); such a stack is not a sample.
            continue
        frames = stack.split(";")
        innermost = frames[-1]
        if (
            len(frames) < 2
            or innermost == _WAITING_FOR_WORK
            or any(innermost.startswith(idle) for idle in _IDLE)
        ):
            continue
        counts[(_thread(frames[0]), _group(frames[-1]))] += int(count)
    return counts


def _thread(frame: str) -> str:
    if "MainThread" in frame:
        return "loop"
    if "legacy_" in frame:
        return "legacy"
    return frame.rpartition(": ")[2] or frame


def _group(frame: str) -> str:
    match = _FRAME_FILE.search(frame)
    file = match.group(1) if match else ""
    if file.startswith(("gateway/", "bench/")):
        return file
    for package in _PACKAGES:
        if f"{package}/" in file:
            return package
    return Path(file).stem if file else "native"


def _print_shares(counts: collections.Counter[tuple[str, str]], us: float, top: int) -> None:
    total = sum(counts.values())
    by_thread: collections.Counter[str] = collections.Counter()
    for (thread, _), count in counts.items():
        by_thread[thread] += count
    print(
        "  busy CPU by thread: "
        + ", ".join(f"{thread} {100 * n / total:.0f} %" for thread, n in by_thread.most_common())
    )
    print(f"  {'share':>6}  {'µs/req':>6}  thread  group")
    for (thread, group), count in counts.most_common(top):
        share = count / total
        print(f"  {100 * share:5.1f} %  {share * us:6.1f}  {thread:<7} {group}")


if __name__ == "__main__":
    sys.exit(main())
