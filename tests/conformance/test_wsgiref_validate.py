"""PEP 3333, checked by the standard library: ``wsgiref.validate`` around a raw WSGI app, served by
a real ``gateway serve``.

The validator (``validated_wsgi_app.py``) raises ``AssertionError`` inside the server on any
violation by the gateway's adapter or the app, and reports an iterable the server never closed on
stderr; both reach the gateway's log. So every test checks two things: the response is right,
and the log holds no validator complaint (after each test, and once more when the server has
stopped and written everything).
"""

from __future__ import annotations

import io
import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hardening import parse_response, raw_exchange, read_all
from support import GatewayProcess, eventually
from validated_wsgi_app import chunk, run_ops

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent

CONFIG = """
[server]
graceful_shutdown = 2

[legacy]
app = "validated_wsgi_app:create_app"
threads = 4
"""

#: What the validator (or a failing app) leaves in the log.
VIOLATIONS = ("AssertionError", "WSGIWarning", "without being closed", "Traceback")
#: The gateway's default ``legacy.buffer_body_limit``: bodies up to it are read before the app runs.
BUFFER_BODY_LIMIT = 65536


def _lines(count: int) -> bytes:
    """Lines of many lengths (empty ones too), and a last line without its newline."""
    lines = [
        b"\n" if i % 13 == 0 else b"%d:%s\n" % (i, b"x" * (i * 37 % 301)) for i in range(count)
    ]
    return b"".join(lines) + b"the last line has no newline"


SMALL = _lines(20)
LARGE = _lines(1000)

#: name -> (body, sent with a Content-Length or chunked, in pieces of this many bytes)
BODIES: dict[str, tuple[bytes, int | None]] = {
    "empty": (b"", None),
    "small": (SMALL, None),
    "small-chunked": (SMALL, 13),
    "large": (LARGE, None),
    "large-chunked": (LARGE, 997),
}

#: name -> the reading calls, in order (``validated_wsgi_app.run_ops``).
OPS: dict[str, list[str]] = {
    "read-all": ["read:-1", "read:1"],
    "read-none": ["read:None", "read:1"],
    "read-negative": ["read:7", "read:-2", "read:1"],
    "read-sizes": ["read:0", "read:1", "read:7", "read:4096", "read:100000", "read:5", "read:-1"],
    "readline": [
        *["readline"] * 5,
        *["readline:0", "readline:1", "readline:3", "readline:64", "readline:-1", "readline:-9"],
        *["readline:None", "readline:100000", "read:-1", "readline"],
    ],
    "readlines": ["readlines", "readlines", "read:1"],
    "readlines-none": ["readlines:None", "read:1"],
    "readlines-hints": ["readlines:1", "readlines:10", "readlines:5000", "readlines:0"],
    "readlines-negative": ["readline", "readlines:-7", "read:1"],
    "iter": ["iter", "read:1"],
    "iter-server": ["iter-server", "read:1"],
    "mixed": [
        *["next:3", "read:10", "readline:5", "readlines:300", "next:2", "readline"],
        *["read:200", "iter-server", "readline", "readlines", "read:-1"],
    ],
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = tmp_path_factory.mktemp("wsgiref-validate") / "gateway.toml"
    config.write_text(CONFIG)
    python_path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    process = GatewayProcess(config, env={"PYTHONPATH": python_path})
    with process:
        yield process
    # Stopped: whatever a late close() or a collected iterable wrote is in the log now.
    assert violations(process) == []


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base_url, timeout=10) as http:
        yield http
    assert violations(gateway) == []


def violations(gateway: GatewayProcess) -> list[str]:
    return [line for line in gateway.log_text().splitlines() if any(v in line for v in VIOLATIONS)]


def new_tag() -> str:
    return uuid.uuid4().hex


def closed(gateway: GatewayProcess, tag: str) -> bool:
    """Wait until the app's iterable tagged ``tag`` is closed; False if it never is. Closed twice
    fails the test."""
    if not eventually(lambda: f"conformance: closed {tag} (1)" in gateway.log_text()):
        return False
    assert f"conformance: closed {tag} (2)" not in gateway.log_text()
    return True


# -- wsgi.input: every reading method, buffered and streamed, answers as io.BytesIO does -----------


def _pieces(body: bytes, size: int) -> Iterator[bytes]:
    for index in range(0, len(body), size):
        yield body[index : index + size]


@pytest.mark.parametrize("ops", OPS.values(), ids=list(OPS))
@pytest.mark.parametrize(("body", "piece"), BODIES.values(), ids=list(BODIES))
def test_input(client: httpx.Client, body: bytes, piece: int | None, ops: list[str]) -> None:
    content = body if piece is None else _pieces(body, piece)
    response = client.post("/input", params={"ops": ",".join(ops)}, content=content)

    assert response.status_code == 200, response.text
    buffered = piece is None and len(body) <= BUFFER_BODY_LIMIT
    expected = io.BytesIO(body)
    assert response.json() == {
        "stream": "BytesIO" if buffered else "StreamedBody",
        "results": run_ops(expected, expected, ops),
    }


# -- the response side: chunks, write(), exc_info, close() -----------------------------------------


@pytest.mark.parametrize(
    ("count", "size", "length"),
    [(1000, 100, False), (1000, 100, True), (200, 16384, False), (200, 16384, True)],
    ids=["1000x100", "1000x100-with-length", "200x16k", "200x16k-with-length"],
)
def test_many_chunks(
    gateway: GatewayProcess, client: httpx.Client, count: int, size: int, length: bool
) -> None:
    tag = new_tag()
    params = {"count": count, "size": size, "tag": tag, "length": "1" if length else ""}
    response = client.get("/chunks", params=params)

    assert response.status_code == 200
    assert response.content == b"".join(chunk(index, size) for index in range(count))
    if length:
        assert response.headers["content-length"] == str(count * size)
    else:
        assert response.headers["transfer-encoding"] == "chunked"
    assert closed(gateway, tag)


def test_many_chunks_framed_on_the_wire(gateway: GatewayProcess) -> None:
    tag = new_tag()
    response = raw_exchange(
        gateway.port,
        f"GET /chunks?count=300&size=50&tag={tag} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    assert response.status == 200
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.raw.endswith(b"\r\n0\r\n\r\n")
    assert response.body == b"".join(chunk(index, 50) for index in range(300))
    assert closed(gateway, tag)


def test_write_then_an_iterable(gateway: GatewayProcess, client: httpx.Client) -> None:
    tag = new_tag()
    response = client.get("/write", params={"tag": tag})
    assert response.status_code == 200
    assert response.text == "written by write(), then iterated"
    assert closed(gateway, tag)


def test_write_only(client: httpx.Client) -> None:
    response = client.get("/write-only")
    assert response.status_code == 200
    assert response.headers["content-length"] == "25"
    assert response.text == "all of it through write()"


def test_exc_info_before_the_body_replaces_the_response(
    gateway: GatewayProcess, client: httpx.Client
) -> None:
    tag = new_tag()
    response = client.get("/exc-info", params={"tag": tag})
    assert response.status_code == 500
    assert response.text == "the app's own error page"
    assert "x-doomed" not in response.headers  # the first start_response's headers are gone
    assert closed(gateway, tag)


def test_exc_info_after_the_first_byte_is_raised_and_the_response_cut(
    gateway: GatewayProcess,
) -> None:
    tag = new_tag()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(f"GET /exc-info-late?tag={tag} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        raw = read_all(sock)
    response = parse_response(raw)
    assert response.status == 200
    assert response.body == b"first"
    assert not raw.endswith(b"0\r\n\r\n")  # no last chunk: the client can tell it was cut
    assert closed(gateway, tag)
    # The app's exception, re-raised by start_response, is the one logged.
    events = [event for event in gateway.log_events() if "LateFailure" in json.dumps(event)]
    assert events
    assert "AssertionError" not in json.dumps(events)


def test_a_client_that_leaves_gets_the_iterable_closed(gateway: GatewayProcess) -> None:
    tag = new_tag()
    with (
        httpx.Client(base_url=gateway.base_url, timeout=10) as http,
        http.stream("GET", "/endless", params={"tag": tag}) as response,
    ):
        received = 0
        for data in response.iter_bytes():
            received += len(data)
            if received > 200_000:
                break
    assert closed(gateway, tag)
    assert violations(gateway) == []


def test_head(gateway: GatewayProcess, client: httpx.Client) -> None:
    tag = new_tag()
    response = client.head("/chunks", params={"count": 3, "size": 10, "tag": tag, "length": "1"})
    assert response.status_code == 200
    assert response.headers["content-length"] == "30"
    assert response.content == b""
    assert closed(gateway, tag)


# -- the environ -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_environ(client: httpx.Client, method: str) -> None:
    response = client.request(
        method,
        "/environ/caf%C3%A9/x%20y",
        params={"q": "a b", "x": "1"},
        headers={"X-Custom": "value", "Content-Type": "text/plain"},
        content=b"body",
    )
    assert response.status_code == 200, response.text
    environ = response.json()
    assert environ["REQUEST_METHOD"] == method
    # PEP 3333: the decoded path as latin-1 "bytes in a str".
    assert environ["PATH_INFO"] == "/environ/café/x y".encode().decode("latin-1")
    assert environ["SCRIPT_NAME"] == ""
    assert environ["QUERY_STRING"] == "q=a+b&x=1"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["CONTENT_LENGTH"] == "4"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["HTTP_X_CUSTOM"] == "value"
    assert "HTTP_CONTENT_LENGTH" not in environ
    assert "HTTP_CONTENT_TYPE" not in environ
    assert environ["wsgi.version"] == [1, 0]
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.multithread"] is True
    assert environ["wsgi.run_once"] is False
    assert environ["wsgi.input_terminated"] is True


def test_environ_of_an_http_1_0_request(gateway: GatewayProcess) -> None:
    response = raw_exchange(gateway.port, b"GET /environ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    assert response.status == 200
    environ = response.json()
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert environ["PATH_INFO"] == "/environ"
    assert environ["QUERY_STRING"] == ""
