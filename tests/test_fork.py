"""Surviving fork(): ``gunicorn --preload`` builds the app once and then forks its workers.

The unit tests really fork (the child reports through a pipe and ends with ``os._exit``, so it
never runs the rest of pytest); the end-to-end test runs gunicorn itself.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import free_port, written_json_lines

from gateway.log_sink import LineSink
from gateway.middleware.request_context import new_request_id

TESTS = Path(__file__).resolve().parent

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def in_child(work: Callable[[], bytes], *, timeout: float = 10.0) -> bytes:
    """Run ``work`` in a forked child and return what it returned; fail on an error or a hang."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads may deadlock the child: the
        # hazard these tests are about (the log sink's flusher is a thread).
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            os.close(read_end)
            result = work()
        except BaseException:
            result, code = traceback.format_exc().encode(), 1
        try:
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(result)
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    deadline = time.monotonic() + timeout
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([pipe], [], [], remaining)[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail(f"the forked child hung for {timeout} s")
            chunk = pipe.read(65536)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    output = b"".join(chunks)
    assert os.waitstatus_to_exitcode(status) == 0, output.decode(errors="replace")
    return output


def test_request_ids_differ_between_parent_and_child() -> None:
    new_request_id()  # the generator is in use before the fork, as in a preloaded master

    child = in_child(lambda: " ".join(new_request_id() for _ in range(5)).encode())
    parent = [new_request_id() for _ in range(5)]

    child_ids = child.decode().split()
    assert len(set(child_ids)) == 5
    assert not set(child_ids) & set(parent)


def test_child_flushes_its_lines_periodically(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with path.open("a") as stream:
        sink = LineSink(stream, interval=0.01)

        def child() -> bytes:
            sink.write("from the child", urgent=False)  # no flush asked for
            deadline = time.monotonic() + 5
            while not path.read_text() and time.monotonic() < deadline:
                time.sleep(0.01)
            return path.read_text().encode()

        assert in_child(child) == b"from the child\n"
        sink.close()


def test_lines_pending_at_the_fork_are_written_once_by_the_parent(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with path.open("a") as stream:
        sink = LineSink(stream, interval=60)  # no periodic flush: only the ones below
        sink.write("parent, before the fork", urgent=False)

        def child() -> bytes:
            sink.write("child", urgent=True)  # writes everything the child has pending
            sink.close()
            return b""

        in_child(child)
        sink.write("parent, after the fork", urgent=False)
        sink.close()

    assert path.read_text().splitlines() == [
        "child",
        "parent, before the fork",
        "parent, after the fork",
    ]


class SlowFile:
    """A stream whose writes take a while, so a fork can happen in the middle of one."""

    def __init__(self, path: Path, delay: float) -> None:
        self.path = path
        self.delay = delay
        self.writing = threading.Event()

    def write(self, data: str) -> int:
        self.writing.set()
        time.sleep(self.delay)
        with self.path.open("a") as file:
            return file.write(data)

    def flush(self) -> None:
        return None


def test_a_write_in_progress_at_the_fork_does_not_lock_the_child_out(tmp_path: Path) -> None:
    path = tmp_path / "log"
    stream = SlowFile(path, delay=0.3)
    sink = LineSink(stream, interval=60)  # type: ignore[arg-type]  # it writes and flushes
    writer = threading.Thread(target=sink.write, args=("from a thread",), kwargs={"urgent": True})
    writer.start()
    assert stream.writing.wait(5)  # the thread holds the sink's lock, inside the slow write

    def child() -> bytes:
        stream.delay = 0
        sink.write("from the child", urgent=True)
        return b""

    in_child(child, timeout=10)
    writer.join()
    sink.close()
    assert sorted(path.read_text().splitlines()) == ["from a thread", "from the child"]


# --- gunicorn --preload, end to end ------------------------------------------------------------


@pytest.fixture
def preloaded_gunicorn(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``gunicorn --preload -k gateway.gunicorn_worker.GatewayWorker -w 2 gateway.asgi:app``."""
    from gunicorn.config import KNOWN_SETTINGS

    config = tmp_path / "gateway.toml"
    config.write_text('[legacy]\napp = "sample_apps:create_pid_flask"\n')
    log = tmp_path / "gunicorn.log"
    port = free_port()
    options = ["--preload", "-k", "gateway.gunicorn_worker.GatewayWorker", "-w", "2"]
    options += ["-b", f"127.0.0.1:{port}", "--graceful-timeout", "5"]
    if any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS):
        options.append("--no-control-socket")  # newer gunicorn: else a socket in $HOME
    env = {
        **os.environ,
        "GATEWAY_CONFIG": str(config),
        "GATEWAY_LOGGING__FORMAT": "json",
        "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", *options, "gateway.asgi:app"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}", log
    finally:
        process.terminate()
        process.wait(15)


@pytest.mark.e2e
def test_preloaded_gunicorn_workers_make_distinct_ids_and_flush_logs(
    preloaded_gunicorn: tuple[str, Path],
) -> None:
    base_url, log = preloaded_gunicorn
    deadline = time.monotonic() + 30
    served: dict[str, int] = {}  # request id -> the worker's pid
    while time.monotonic() < deadline:
        try:
            # A new connection each time, so either worker may accept it.
            response = httpx.get(f"{base_url}/pid", timeout=5)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        assert response.status_code == 200, log.read_text()
        request_id = response.headers["x-request-id"]
        assert request_id not in served, f"{request_id} twice"
        served[request_id] = response.json()["pid"]
        if len(served) >= 10 and len(set(served.values())) == 2:
            break
    assert len(set(served.values())) == 2, f"one worker answered everything:\n{log.read_text()}"

    # Each worker's access lines reach the log without an urgent line or a shutdown flushing
    # them: the flusher thread runs in the workers too.
    while time.monotonic() < deadline:
        written = log.read_text()
        if all(request_id in written for request_id in served):
            break
        time.sleep(0.05)
    missing = [request_id for request_id in served if request_id not in log.read_text()]
    assert not missing, log.read_text()


@pytest.mark.e2e
def test_the_gunicorn_worker_leaves_forwarding_headers_to_the_gateway(
    preloaded_gunicorn: tuple[str, Path],
) -> None:
    """uvicorn's own proxy-header handling trusts 127.0.0.1 by default and would rewrite the
    client from a forged ``X-Forwarded-For``; with the gateway's worker, ``server.trusted_proxies``
    (empty here) decides, and the header is removed, not believed."""
    base_url, log = preloaded_gunicorn
    response = None
    deadline = time.monotonic() + 30
    while response is None and time.monotonic() < deadline:
        try:
            response = httpx.get(
                f"{base_url}/pid", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=5
            )
        except httpx.TransportError:
            time.sleep(0.1)
    assert response is not None
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]

    def access_lines() -> list[dict[str, Any]]:
        return [
            line
            for line in written_json_lines(log.read_text())
            if line.get("request_id") == request_id and line["event"] == "request"
        ]

    while time.monotonic() < deadline and not access_lines():
        time.sleep(0.05)
    [line] = access_lines()
    assert line["client"].startswith("127.0.0.1:")
