"""``gateway serve --workers N``: the supervisor starts the workers without building the app
itself, and a broken config or app still stops everything, before any worker serves, with the
CLI's clear lines and exit status (2: the config, 1: the app)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hardening import sample_env
from support import demo_config, free_port

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
