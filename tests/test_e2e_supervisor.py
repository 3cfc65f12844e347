"""``gateway serve --workers N``: the supervisor starts the workers without building the app
itself, and a broken config or app still stops everything, before any worker serves, with the
CLI's clear lines and exit status (2: the config, 1: the app)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hardening import sample_env
from support import demo_config, free_port, written_json_lines

pytestmark = pytest.mark.e2e

#: What the supervisor must not load: the apps, the frameworks, the gateway's composition root.
APP_MODULES = ("flask", "werkzeug", "fastapi", "new_services", "gateway.app", "gateway.build")

# A real `gateway serve --workers 2` in this process's main thread, as the command runs it. A
# thread waits until a worker answers, writes what this process (the supervisor) has imported,
# and stops the server as an operator would (SIGTERM).
_OBSERVED_SUPERVISOR = """
import json, os, signal, sys, threading, time, urllib.request
from gateway.cli import main

def observe(url, report):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.1)
    with open(report, "w") as out:
        json.dump({"served": time.monotonic() < deadline, "modules": sorted(sys.modules)}, out)
    os.kill(os.getpid(), signal.SIGTERM)

url, report, *argv = sys.argv[1:]
threading.Thread(target=observe, args=(url, report), daemon=True).start()
sys.exit(main(argv))
"""


def serve(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "gateway.cli", "serve", "--config", str(config),
            "--port", str(free_port()), "--workers", "2", *args,
        ],
        cwd=config.parent,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )  # fmt: skip


def test_the_supervisor_serves_through_its_workers_without_loading_the_app(
    tmp_path: Path,
) -> None:
    config = demo_config(tmp_path)
    port = free_port()
    report = tmp_path / "supervisor.json"
    result = subprocess.run(
        [
            sys.executable, "-c", _OBSERVED_SUPERVISOR,
            f"http://127.0.0.1:{port}/_gateway/ready", str(report),
            "serve", "--config", str(config), "--port", str(port), "--workers", "2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    observed = json.loads(report.read_text())
    assert observed["served"], result.stdout
    loaded = [name for name in APP_MODULES if name in observed["modules"]]
    assert loaded == [], loaded
    # What it does need is there: uvicorn's supervisor, and the metrics' multiprocess mode.
    assert {"gateway.supervisor", "gateway.metrics.multiproc"} <= set(observed["modules"])


def test_a_broken_config_file_exits_2_before_any_worker_starts(tmp_path: Path) -> None:
    config = demo_config(tmp_path, extra="\n[bogus]\nanswer = 42\n")
    result = serve(config)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"gateway: config error: {config}: bogus: unknown key"]
    assert "Started parent process" not in result.stdout  # no worker was started


BOOM = """
def create_app():
    raise RuntimeError("database is down")
"""


@pytest.mark.parametrize(
    ("app", "status", "line"),
    [
        (
            "no_such_module:create_app",
            2,
            "gateway: config error: {config}: services.accounts.app: no module named "
            "'no_such_module'",
        ),
        (
            "boom:create_app",
            1,
            "gateway: start-up error: services.accounts: factory 'boom:create_app' failed: "
            "RuntimeError('database is down')",
        ),
    ],
    ids=["config-error-found-by-the-build", "app-that-fails-to-build"],
)
def test_an_app_the_workers_cannot_build_stops_everything_with_one_clear_line(
    tmp_path: Path, app: str, status: int, line: str
) -> None:
    (tmp_path / "boom.py").write_text(BOOM)  # beside the config: importable from there
    config = demo_config(tmp_path)
    config.write_text(
        config.read_text().replace('"new_services.accounts:create_app"', json.dumps(app))
    )
    result = serve(config)
    assert result.returncode == status, result.stdout + result.stderr
    # Once, though both workers found it; no traceback.
    assert result.stderr.splitlines() == [line.format(config=config)]
    assert "Traceback" not in result.stdout
    # No worker got past its build, so none ever served.
    assert "Started server process" not in result.stdout


def test_a_service_lifespan_that_fails_in_the_workers_exits_1(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[legacy]\napp = "sample_apps:create_flask"\n'
        '[services.broken]\napp = "sample_apps:create_failing_service"\n'
    )
    result = serve(config, env={**sample_env(tmp_path), "GATEWAY_LOGGING__FORMAT": "json"})
    assert result.returncode == 1, result.stdout + result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    failures = {e["error"] for e in events if e["event"] == "gateway.startup_failed"}
    assert failures == {"service 'broken' failed to start: RuntimeError: database unreachable"}
    assert "Traceback" not in result.stdout + result.stderr


def _workers(supervisor: int) -> dict[int, set[int]]:
    """The supervisor's worker processes (uvicorn spawns them) and the CPUs each may use."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    workers = {}
    for pid in map(int, children):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers[pid] = os.sched_getaffinity(pid)
    return workers


def _threads(pid: int) -> dict[int, set[int]]:
    """Each thread of process ``pid`` and the CPUs it may use."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            threads[int(task.name)] = os.sched_getaffinity(int(task.name))
    return threads


def _all_pinned(supervisor: int, count: int) -> dict[int, set[int]] | None:
    """The supervisor's workers and their CPUs once there are ``count``, each on one CPU."""
    found = _workers(supervisor)
    pinned = len(found) == count and all(len(cpus) == 1 for cpus in found.values())
    return found if pinned else None


def _until(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


_TWO_CPUS = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and two CPUs",
)


@contextlib.contextmanager
def _pinned_gateway(
    tmp_path: Path, workers: int, cpus: set[int] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], Callable[[], bool], int]]:
    """``gateway serve --workers N`` with ``server.pin_workers`` (on ``cpus`` only, when given),
    serving once it yields: the process, a readiness probe and the port. Stopped with SIGTERM after,
    which must end it with status 0."""
    config = demo_config(tmp_path)
    config.write_text(config.read_text().replace("[server]\n", "[server]\npin_workers = true\n"))
    port = free_port()
    command = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)]
    log = (tmp_path / "serve.log").open("w")
    if cpus is not None:
        # taskset (util-linux), not preexec_fn: Python code between fork and exec is unsafe
        # while other threads run.
        command = ["taskset", "-c", ",".join(map(str, sorted(cpus))), *command]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--workers", str(workers)],
        cwd=tmp_path,
        env={**os.environ, "GATEWAY_LOGGING__FORMAT": "json"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    ready = f"http://127.0.0.1:{port}/_gateway/ready"

    def served() -> bool:
        try:
            with urllib.request.urlopen(ready, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        _until(served, "the workers to serve")
        yield process, served, port
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        log.close()


def _pinned_lines(tmp_path: Path) -> list[int]:
    """The CPUs the ``server.worker_pinned`` lines of the run's log name, sorted. A worker
    writes its line once it has built the app."""
    lines = written_json_lines((tmp_path / "serve.log").read_text())
    return sorted(line["cpu"] for line in lines if line["event"] == "server.worker_pinned")


@_TWO_CPUS
def test_pinned_workers_run_on_a_cpu_each_and_a_replacement_takes_the_freed_one(
    tmp_path: Path,
) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    with _pinned_gateway(tmp_path, workers=2) as (process, served, _):
        # One worker serving says nothing of the other: on a loaded host it may still be
        # starting its interpreter, not yet pinned (a worker pins itself before it builds the
        # app). Wait for both to be pinned, as the replacement is waited for below.
        workers = _until(lambda: _all_pinned(process.pid, 2), "both workers to be pinned")
        # One CPU each, the first two this process may use.
        assert sorted(workers.values(), key=min) == [{allowed[0]}, {allowed[1]}]
        # One serving says nothing of the other's build: a worker killed before it built the
        # app would never log its line.
        _until(lambda: _pinned_lines(tmp_path) == allowed[:2], "both workers to build the app")

        killed, freed = next(iter(workers.items()))
        os.kill(killed, signal.SIGKILL)

        def replaced_and_pinned() -> dict[int, set[int]] | None:
            found = _workers(process.pid)
            pinned = killed not in found and all(len(cpus) == 1 for cpus in found.values())
            return found if len(found) == 2 and pinned else None

        replaced = _until(replaced_and_pinned, "uvicorn to replace the killed worker")
        assert sorted(replaced.values(), key=min) == [{allowed[0]}, {allowed[1]}]
        replacement = next(pid for pid in replaced if pid not in workers)
        assert replaced[replacement] == freed
        # Two at the start, one for the replacement (which took the CPU the killed worker
        # left). Waited for: a worker pins itself first and builds the app after, and the
        # other worker serves meanwhile.
        expected = sorted([allowed[0], allowed[1], min(freed)])
        _until(lambda: _pinned_lines(tmp_path) == expected, "the replacement to build the app")
        _until(served, "the replacement to serve")
    assert _pinned_lines(tmp_path) == expected


@_TWO_CPUS
def test_one_pinned_worker_runs_every_thread_on_one_cpu(tmp_path: Path) -> None:
    """With one worker there is no supervisor: the process pins itself, with every thread it
    has (the log flusher) and every thread it starts later (the legacy pool's, on demand)."""
    first = min(os.sched_getaffinity(0))
    with _pinned_gateway(tmp_path, workers=1) as (process, _, port):
        for _ in range(4):  # legacy pages: the pool starts its threads as work arrives
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                assert response.status == 200
        threads = _threads(process.pid)
        assert len(threads) >= 3, threads  # the loop, the log flusher, a legacy thread at least
        assert set(map(frozenset, threads.values())) == {frozenset({first})}
        _until(lambda: _pinned_lines(tmp_path) == [first], "the pinned line")
    log = (tmp_path / "serve.log").read_text()
    assert "pin_workers_ignored" not in log


@_TWO_CPUS
def test_more_workers_than_cpus_go_round_the_cpus(tmp_path: Path) -> None:
    # The supervisor may use two CPUs; three pinned workers take the first, the second, and the
    # first again (none is left unpinned, none refused), and the gateway serves.
    first, second = sorted(os.sched_getaffinity(0))[:2]
    with _pinned_gateway(tmp_path, workers=3, cpus={first, second}) as (process, served, _):
        workers = _until(lambda: _all_pinned(process.pid, 3), "three pinned workers")
        assert sorted(sorted(cpus) for cpus in workers.values()) == [
            [first],
            [first],
            [second],
        ]
        assert served()
        # Each worker logs its CPU once it has built the app; one serving says nothing of the
        # others' builds.
        _until(lambda: _pinned_lines(tmp_path) == [first, first, second], "every worker's build")
    assert _pinned_lines(tmp_path) == [first, first, second]


def test_pin_workers_is_refused_with_legacy_worker_processes(tmp_path: Path) -> None:
    config = demo_config(tmp_path)
    text = config.read_text().replace("[server]\n", "[server]\npin_workers = true\n")
    config.write_text(text.replace("[legacy]\n", '[legacy]\nisolation = "processes"\n', 1))
    result = serve(config)
    assert result.returncode == 2, result.stderr
    assert "server.pin_workers: not with legacy.isolation" in result.stderr
