"""Helpers for the hardening tests: the hostile-input config and raw HTTP over sockets."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support import eventually

TESTS = Path(__file__).resolve().parent

#: Small limits, so every limit is reachable in a test in well under a second of traffic.
HARDENING_CONFIG = """
[server]
allowed_hosts = ["127.0.0.1", "localhost", "*.example.test"]
graceful_shutdown = 3

[limits]
max_head_size = 4096
head_timeout = 2
max_body_size = 1000
body_timeout = 2

[[limits.routes]]
path = "/upload-big"
methods = ["POST"]
max_body_size = 100000

[legacy]
app = "sample_apps:create_hardening_flask"
threads = 2
queue_timeout = 0.5
request_timeout = 20

[services.svc]
app = "sample_apps:create_hardening_service"
[services.svc.options]
name = "svc"

[services.other]
app = "sample_apps:create_hardening_service"
[services.other.options]
name = "other"

[auth]
default_access = "public"

[[auth.policies]]
path = "/admin/items/{item_id:int}"
methods = ["DELETE"]
roles = ["admin"]

[[routes]]
path = "/svc/echo"
methods = ["GET"]
backend = "svc"

[[routes]]
path = "/svc/redirect"
methods = ["GET"]
backend = "svc"

[[routes]]
path = "/svc/late-stream"
methods = ["GET"]
backend = "svc"

[[routes]]
path = "/svc/ticks"
methods = ["GET"]
backend = "svc"

[[routes]]
path = "/svc/upload"
methods = ["POST"]
backend = "svc"
"""


def hardening_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(HARDENING_CONFIG + extra)
    return path


def sample_env(tmp_path: Path, **more: str) -> dict[str, str]:
    """Makes ``sample_apps`` importable and records lifespan events in a file."""
    return {
        "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "SAMPLE_EVENTS": str(tmp_path / "events.txt"),
        **more,
    }


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def parse_response(raw: bytes) -> RawResponse:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return RawResponse(status, headers, body, raw)


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += body[:size]
        body = body[size + 2 :]
    return out


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything until the server closes (or ``timeout`` passes)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def raw_exchange(port: int, request: bytes, timeout: float = 10.0) -> RawResponse:
    """Send raw bytes (ending the request with ``Connection: close`` is the caller's job)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        raw = read_all(sock, timeout)
    assert raw, "the server closed the connection without answering"
    return parse_response(raw)


def get(port: int, target: str, host: str = "127.0.0.1", headers: str = "") -> RawResponse:
    return raw_exchange(
        port,
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n".encode(),
    )


def wait_for(predicate: Any, timeout: float = 10.0) -> bool:
    return bool(eventually(predicate, timeout))
