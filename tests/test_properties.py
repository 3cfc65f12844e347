"""Property tests: generated path spellings, methods and hostile header sets never reach a
protected route without credentials, and nothing answers 500.

Most examples run in process, through the whole ASGI stack ``create_app`` builds for the demo
(request context, request head, limits, auth, dispatch, Flask and FastAPI), with raw paths that
no HTTP client library would send; a smaller sample goes over raw sockets to a real server.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
from hardening import parse_response, read_all
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import GatewayProcess, call, demo_config, http_scope

from gateway.app import GatewayApp, create_app
from gateway.settings import load_settings

#: (method, path) pairs the demo protects: none may answer 2xx to an anonymous caller.
PROTECTED = [
    ("GET", "/admin/users"),
    ("GET", "/api/me"),
    ("GET", "/reports/sales.csv"),
    ("GET", "/_gateway/routes"),
    ("GET", "/_gateway/api/flags"),
    ("PUT", "/_gateway/api/kill-switch"),
    ("PUT", "/api/books/1"),
    ("DELETE", "/api/books/1"),
    ("POST", "/api/books"),
    ("POST", "/api/uploads"),
]

INSERTS = [
    "/", "//", "/.", "/..", "/./", "/../", "/%2e", "/%2E%2E", "%2f", "%2F", "%5c", "\\", ";x",
    "%00", "%0a", "%0d%0a", "%ff", "%c0%ae", "%c0%af", "%25", "%252f", "/static/..",
    "/static/%2e%2e", " ", "%20", "~", "*", "@", ":", "%3f", "%23", "\t", "é", "%e2%80%ae",
]  # fmt: skip

HOSTILE_HEADERS = [
    (b"x-http-method-override", b"GET"),
    (b"x-http-method", b"GET"),
    (b"x-method-override", b"GET"),
    (b"x-forwarded-for", b"127.0.0.1"),
    (b"x-forwarded-proto", b"https"),
    (b"x-forwarded-host", b"localhost"),
    (b"forwarded", b"for=127.0.0.1;host=localhost"),
    (b"x-real-ip", b"127.0.0.1"),
    (b"x-user-id", b"alice"),
    (b"x-user", b"alice"),
    (b"x-remote-user", b"alice"),
    (b"remote-user", b"alice"),
    (b"x-user_id", b"alice"),
    (b"x_remote_user", b"alice"),
    (b"x-gateway-identity", b"alice"),
    (b"x-gateway-override", b"new"),
    (b"authorization", b"Bearer not.a.token"),
    (b"authorization", b"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9."),
    (b"authorization", b"Basic YWxpY2U6d29uZGVybGFuZA=="),
    (b"cookie", b"session=eyJ1c2VyIjoiYWxpY2UifQ.forged.sig"),
    (b"cookie", b"session=alice; session=alice"),
    (b"x-api-key", b"not-the-key"),
    (b"x-api-key", b""),
    (b"content-length", b"0"),
    (b"expect", b"100-continue"),
    (b"x-request-id", b"../../etc/passwd\n"),
    (b"host", b"evil.example"),
    (b"host", b"localhost"),
]


@st.composite
def spellings(draw: st.DrawFn, path: str) -> bytes:
    """``path`` with characters percent-encoded at random and ambiguous pieces inserted."""
    chars = []
    for char in path:
        how = draw(st.integers(0, 7))
        if how == 0 and char != "/":
            chars.append(f"%{ord(char):02X}")
        elif how == 1:
            chars.append(f"%{ord(char):02x}")
        elif how == 2 and char.isalpha():
            chars.append(char.swapcase())
        else:
            chars.append(char)
    raw = "".join(chars)
    for insert in draw(st.lists(st.sampled_from(INSERTS), max_size=3)):
        position = draw(st.integers(0, len(raw)))
        raw = raw[:position] + insert + raw[position:]
    return raw.encode("utf-8")


@st.composite
def hostile_requests(draw: st.DrawFn) -> tuple[str, bytes, list[tuple[bytes, bytes]]]:
    method, path = draw(st.sampled_from(PROTECTED))
    method = draw(st.sampled_from([method, method, method.lower(), method.title(), "M-SEARCH"]))
    raw_path = draw(st.one_of(st.just(path.encode()), spellings(path)))
    headers = draw(st.lists(st.sampled_from(HOSTILE_HEADERS), max_size=6))
    if not any(name == b"host" for name, _ in headers):
        headers.append((b"host", b"localhost"))
    return method, raw_path, headers


class RunningGateway:
    """The gateway app with its lifespan started, driven on one event loop of its own."""

    def __init__(self, app: GatewayApp) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self._inbox: asyncio.Queue[dict[str, Any]] | None = None
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> RunningGateway:
        self.loop.run_until_complete(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.run_until_complete(self._stop())
        self.loop.close()

    async def _start(self) -> None:
        self._inbox = asyncio.Queue()
        started = asyncio.Event()

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.complete":
                started.set()

        inbox = self._inbox
        self._task = asyncio.ensure_future(self.app({"type": "lifespan"}, inbox.get, send))
        await inbox.put({"type": "lifespan.startup"})
        await asyncio.wait_for(started.wait(), 20)

    async def _stop(self) -> None:
        assert self._inbox is not None
        assert self._task is not None
        await self._inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(self._task, 20)

    def request(self, method: str, raw_path: bytes, headers: list[tuple[bytes, bytes]]) -> Any:
        scope = http_scope(method=method, headers=headers, raw_path=raw_path)
        # What uvicorn puts in "path": the target percent-decoded once.
        scope["path"] = unquote_to_bytes(raw_path).decode("latin-1")
        return self.loop.run_until_complete(asyncio.wait_for(call(self.app, scope, [b""]), 20))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    config = demo_config(tmp_path_factory.mktemp("properties"))
    # The default log level: create_app configures structlog for the whole test process.
    settings_ = load_settings(config, {"GATEWAY_FLAGS__STORE": "memory"})
    with RunningGateway(create_app(settings_)) as running:
        yield running


def assert_not_served(status: int, body: bytes, what: object) -> None:
    assert status < 500, (status, what, body[:300])
    assert not 200 <= status < 300, (status, what, body[:300])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=hostile_requests())
def test_no_spelling_reaches_a_protected_route_without_credentials(
    gateway: RunningGateway, request: tuple[str, bytes, list[tuple[bytes, bytes]]]
) -> None:
    method, raw_path, headers = request
    exchange = gateway.request(method, raw_path, headers)
    assert exchange.complete
    assert_not_served(exchange.status, exchange.body, request)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    raw_path=st.binary(max_size=40).map(lambda tail: b"/" + tail),
    headers=st.lists(
        st.tuples(
            st.sampled_from([b"host", b"x-a", b"x-forwarded-for", b"content-type", b"cookie"]),
            st.binary(max_size=30).filter(lambda v: b"\r" not in v and b"\n" not in v),
        ),
        max_size=4,
    ),
)
def test_arbitrary_bytes_never_give_a_500(
    gateway: RunningGateway, raw_path: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    exchange = gateway.request("GET", raw_path, [(b"host", b"localhost"), *headers])
    assert exchange.complete
    assert exchange.status < 500, (raw_path, headers, exchange.body[:300])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = demo_config(tmp_path_factory.mktemp("properties-e2e"))
    with GatewayProcess(config) as running:
        yield running


@pytest.mark.e2e
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=hostile_requests())
def test_over_real_sockets_too(
    server: GatewayProcess, request: tuple[str, bytes, list[tuple[bytes, bytes]]]
) -> None:
    method, raw_path, headers = request
    head = method.encode() + b" " + raw_path.replace(b" ", b"%20") + b" HTTP/1.1\r\n"
    for name, value in headers:
        head += name + b": " + value + b"\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + b"Connection: close\r\n\r\n")
        raw = read_all(sock, timeout=10)
    response = parse_response(raw)
    assert_not_served(response.status, response.body, request)


def test_the_generators_do_produce_the_attacks(tmp_path: Path) -> None:
    """Guard against a strategy that silently stopped generating what it promises."""
    seen: set[bytes] = set()

    @settings(max_examples=300, database=None)
    @given(spellings("/admin/users"))
    def collect(raw: bytes) -> None:
        seen.add(raw)

    collect()
    assert any(b"%2" in raw for raw in seen)
    assert any(b"//" in raw or b"/." in raw for raw in seen)
    assert any(b"/ADMIN" in raw.upper() and raw != raw.lower() for raw in seen)


def test_the_harness_can_see_a_protected_route_served(gateway: RunningGateway) -> None:
    """The positive control: with the demo's API key the same requests are served, so a 2xx
    would show up in the properties above if a spelling slipped past the policy."""
    key = (b"x-api-key", b"demo-reporting-key-not-a-secret")
    served = gateway.request("GET", b"/api/me", [(b"host", b"localhost"), key])
    assert served.status == 200, served.body
    assert gateway.request("GET", b"/api/me", [(b"host", b"localhost")]).status == 401
