"""Test helpers: drive ASGI apps by hand, write configs, and run a real ``gateway serve``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.context import FACTS_KEY, Identity, RequestFacts

REPO = Path(__file__).resolve().parent.parent


def http_scope(
    path: str = "/",
    method: str = "GET",
    headers: Iterable[tuple[bytes, bytes]] = (),
    raw_path: bytes | None = None,
) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": raw_path if raw_path is not None else path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": list(headers),
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


@dataclass
class Exchange:
    """What an ASGI app sent, with the time each message arrived."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])

    @property
    def body_messages(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == "http.response.body"]

    @property
    def complete(self) -> bool:
        last = self.messages[-1] if self.messages else {}
        return last.get("type") == "http.response.body" and not last.get("more_body", False)


async def call(
    app: Any,
    scope: dict[str, Any],
    body: Iterable[bytes] = (),
    *,
    disconnect_after: float | None = None,
) -> Exchange:
    """Call an ASGI app with a request body given in chunks; optionally disconnect mid-way."""
    chunks = list(body)
    exchange = Exchange()
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        if disconnect_after is not None:
            await asyncio.sleep(disconnect_after)
            gone.set()
        else:
            await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if gone.is_set():
            return  # like uvicorn: writes after a disconnect are dropped
        exchange.messages.append(message)
        exchange.times.append(time.monotonic())

    await app(scope, receive, send)
    return exchange


def cut_upload(
    first: bytes,
) -> tuple[Callable[[], Any], Callable[[dict[str, Any]], Any], list[dict[str, Any]]]:
    """A client that sends ``first``, says more of the body follows, and disconnects: its
    ``receive``, a ``send`` that keeps what the app answers, and that list."""
    messages = [
        {"type": "http.request", "body": first, "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    return receive, send, sent


def eventually(check: Callable[[], Any], limit: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy or ``limit`` seconds pass; return its
    last result (work that runs after a response, or a log line flushed a moment later)."""
    deadline = time.monotonic() + limit
    while True:
        result = check()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


def seconds_until(condition: Callable[[], bool], limit: float) -> float:
    """Seconds until ``condition()`` holds (polled every 20 ms); infinity after ``limit``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > limit:
            return float("inf")
        time.sleep(0.02)
    return time.monotonic() - started


def redis_reachable(port: int = 6379) -> bool:
    """Whether something accepts connections on the Redis port on 127.0.0.1."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


#: Redis tests use the local server and skip cleanly without one.
needs_redis = pytest.mark.skipif(not redis_reachable(), reason="no Redis on 127.0.0.1:6379")


def through_gateway(app: ASGIApp, identity: Identity, request_id: str = "req-123") -> ASGIApp:
    """``app`` as the gateway calls it: with its facts (and verified identity) in the scope."""

    async def gateway(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            facts = RequestFacts(
                request_id=request_id, path=scope["path"], method=scope["method"], identity=identity
            )
            scope = {**scope, FACTS_KEY: facts}
        await app(scope, receive, send)

    return gateway


def run_gateway(*args: str) -> subprocess.CompletedProcess[str]:
    """``gateway ARGS...`` in a fresh process, as an operator runs it; never raises on status."""
    return run_python("-m", "gateway.cli", *args)


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS...`` in a fresh interpreter, in the checkout, with this environment."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def written_json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON lines of a log read while its writer runs. The writer may be half way through
    its last line, so only lines that end in a newline are parsed."""
    *whole, _unfinished = text.split("\n")
    return [json.loads(line) for line in whole if line.startswith("{")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ALL_NEW = {"catalog-books": {"mode": "new"}, "accounts-me": {"mode": "new"}}


def demo_config(
    tmp_path: Path,
    routes: str | None = None,
    extra: str = "",
    *,
    flags: dict[str, Any] | None = ALL_NEW,
) -> Path:
    """A copy of the demo config that keeps its database and flag file in ``tmp_path``.

    ``flags`` is written to the flag store first (default: every flag on the new side, so a
    test sees each migrated route's new backend); ``None`` leaves the store empty, so the
    demo's own defaults (a 50% canary) apply.
    """
    if flags is not None:
        store = tmp_path / "var" / "flags.json"
        store.parent.mkdir(parents=True, exist_ok=True)
        store.write_text(json.dumps({"version": 1, "kill_switch": False, "flags": flags}))
    text = (REPO / "gateway.toml").read_text()
    text = text.replace('"var/bookstore.sqlite3"', json.dumps(str(tmp_path / "bookstore.db")))
    if routes is not None:
        text = text[: text.index("[[routes]]")] + routes
    path = tmp_path / "gateway.toml"
    path.write_text(text + extra)
    return path


class GatewayProcess:
    """``gateway serve`` in a real process on a free loopback port, logging JSON to a file."""

    def __init__(
        self,
        config: Path,
        *,
        env: Mapping[str, str] | None = None,
        args: Iterable[str] = (),
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = config.parent / f"gateway-{self.port}.log"
        self._config = config
        self._env = {
            **os.environ,
            "GATEWAY_LOGGING__FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self._args = list(args)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, wait_ready: bool = True) -> GatewayProcess:
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway.cli",
                    "serve",
                    "--config",
                    str(self._config),
                    "--port",
                    str(self.port),
                    *self._args,
                ],
                cwd=self._config.parent,
                env=self._env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log_text()}")
            try:
                if httpx.get(f"{self.base_url}/_gateway/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gateway not ready after {timeout}s:\n{self.log_text()}")

    def stop(self, timeout: float = 15.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        return written_json_lines(self.log_text())

    def events_for(self, request_id: str, *, until: str = "request") -> list[dict[str, Any]]:
        """Log events of one request, once its line ``until`` is written (the access line is
        written just after the response's last byte, so a client can be faster than it)."""
        deadline = time.monotonic() + 10
        while True:
            events = [e for e in self.log_events() if e.get("request_id") == request_id]
            if any(e["event"] == until for e in events) or time.monotonic() > deadline:
                return events
            time.sleep(0.05)

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
