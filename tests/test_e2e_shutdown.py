"""SIGTERM with a stuck legacy handler and an endless stream open: drain, cut, stop, exit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from hardening import hardening_config, read_all, sample_env, wait_for
from support import GatewayProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

GRACE = 3  # server.graceful_shutdown in the hardening config


def test_sigterm_drains_in_flight_requests_cuts_the_rest_and_stops_every_lifespan_once(
    tmp_path: Path,
) -> None:
    env = sample_env(tmp_path, GATEWAY_LEGACY__THREADS="4")
    gateway = GatewayProcess(hardening_config(tmp_path), env=env).start()
    try:
        _drain_and_stop(gateway, tmp_path)
    finally:
        gateway.stop()  # a no-op once the test has stopped it; never leaves a server behind


def _drain_and_stop(gateway: GatewayProcess, tmp_path: Path) -> None:
    assert gateway.process is not None
    results: dict[str, object] = {}

    def stuck() -> None:  # sleeps 60 s in its Flask thread
        try:
            results["stuck"] = httpx.get(f"{gateway.base_url}/slow?seconds=60", timeout=30)
        except httpx.HTTPError as exc:
            results["stuck"] = exc

    def short() -> None:  # finishes 1.5 s after it starts, well within the grace period
        results["short"] = httpx.get(f"{gateway.base_url}/slow?seconds=1.5", timeout=30)

    stream = socket.create_connection(("127.0.0.1", gateway.port), timeout=30)
    stream.sendall(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
    # The endless stream is flowing (its head and first chunk may come in separate reads).
    received = b""
    deadline = time.monotonic() + 10
    while b"tick" not in received and time.monotonic() < deadline:
        received += stream.recv(65536)
    assert b"tick" in received, received

    workers = [threading.Thread(target=stuck), threading.Thread(target=short)]
    for worker in workers:
        worker.start()
    assert wait_for(lambda: len(gateway.log_events()) > 0)
    time.sleep(0.5)  # both requests are inside their Flask handlers

    started = time.monotonic()
    gateway.process.send_signal(signal.SIGTERM)
    code = gateway.process.wait(GRACE + 10)
    elapsed = time.monotonic() - started
    for worker in workers:
        worker.join(10)
    rest = read_all(stream, timeout=5)
    stream.close()

    assert elapsed < GRACE + 5, f"exited after {elapsed:.1f}s"
    assert code == 0  # a drained SIGTERM is a clean stop, as with gunicorn (not 143)

    short_response = results["short"]
    assert isinstance(short_response, httpx.Response)
    assert short_response.status_code == 200
    assert short_response.json()["slept"] == 1.5

    # The stuck request and the endless stream were cut, never completed as if whole.
    assert not (
        isinstance(results["stuck"], httpx.Response) and results["stuck"].status_code == 200
    )
    assert not rest.endswith(b"0\r\n\r\n")

    recorded = (tmp_path / "events.txt").read_text().splitlines()
    for name in ("svc", "other"):
        assert recorded.count(f"{name}:startup") == 1
        assert recorded.count(f"{name}:shutdown") == 1
    events = [event["event"] for event in gateway.log_events()]
    assert events.count("sample.service_stopped") == 2
    assert "gateway.stopped" in events


def test_a_busy_port_fails_at_once_with_one_line(tmp_path: Path) -> None:
    """Before anything is built: no app, no service lifespan, one line naming the address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable, "-m", "gateway.cli", "serve",
                "--config", str(hardening_config(tmp_path)), "--port", str(port),
            ],
            env={**os.environ, **sample_env(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"gateway: start-up error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert not (tmp_path / "events.txt").exists()  # no service lifespan ran
    assert "gateway.started" not in result.stdout
