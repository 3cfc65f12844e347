"""Hostile input against a real ``gateway serve``: hosts, forwarding headers, methods, size and
time limits, the legacy request timeout. Raw sockets wherever HTTP itself is the subject."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hardening import (
    get,
    hardening_config,
    parse_response,
    raw_exchange,
    read_all,
    sample_env,
    wait_for,
)
from support import GatewayProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp_path = tmp_path_factory.mktemp("hardening")
    with GatewayProcess(hardening_config(tmp_path), env=sample_env(tmp_path)) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The same app, with this machine's loopback address configured as a trusted proxy."""
    tmp_path = tmp_path_factory.mktemp("proxy")
    env = sample_env(tmp_path, GATEWAY_SERVER__TRUSTED_PROXIES='["127.0.0.1"]')
    with GatewayProcess(hardening_config(tmp_path), env=env) as gateway:
        yield gateway


def assert_gateway_error(response: object, status: int) -> None:
    """A JSON error from the gateway itself, with the request id in header and body."""
    assert response.status == status, response.raw[:300]  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["error"]["status"] == status
    assert body["request_id"]
    assert response.headers["x-request-id"] == body["request_id"]  # type: ignore[attr-defined]


# -- 1. Host ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host_lines",
    [
        "Host: evil.example\r\n",
        "Host: 127.0.0.1.evil.example\r\n",
        "Host: example.test\r\n",  # *.example.test is allowed, the bare domain is not
        "Host: localhost@evil.example\r\n",
        "Host: localhost/evil\r\n",
        "Host: localhost\r\nHost: evil.example\r\n",
        "",  # HTTP/1.1 without a Host
    ],
)
def test_a_host_the_server_does_not_serve_gets_json_400(
    server: GatewayProcess, host_lines: str
) -> None:
    response = raw_exchange(
        server.port, f"GET /echo HTTP/1.1\r\n{host_lines}Connection: close\r\n\r\n".encode()
    )
    assert_gateway_error(response, 400)
    assert response.headers["x-gateway-backend"] == "gateway"


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:8080", "127.0.0.1:1", "api.example.test", "a.b.example.test"]
)
def test_allowed_hosts_match_on_any_port_and_wildcard_subdomains(
    server: GatewayProcess, host: str
) -> None:
    response = get(server.port, "/echo", host=host)
    assert response.status == 200, response.raw[:300]
    assert response.json()["host"] == host


def test_http10_without_host_is_served_with_the_servers_own_address(
    server: GatewayProcess,
) -> None:
    response = raw_exchange(server.port, b"GET /echo HTTP/1.0\r\n\r\n")
    assert response.status == 200
    assert response.json()["url"].startswith("http://127.0.0.1:")


@pytest.mark.parametrize("target", ["/redirect", "/svc/redirect"])
def test_redirects_never_point_at_a_forged_host(server: GatewayProcess, target: str) -> None:
    forged = get(server.port, target, host="evil.example")
    assert_gateway_error(forged, 400)
    assert "location" not in forged.headers

    allowed = get(server.port, target, host=f"localhost:{server.port}")
    assert allowed.status in (302, 307)
    assert allowed.headers["location"].startswith(f"http://localhost:{server.port}/")


# -- 2. Forwarding headers ----------------------------------------------------------------------

FORGED = (
    "X-Forwarded-For: 6.6.6.6\r\n"
    "X-Forwarded-Proto: https\r\n"
    "X-Forwarded-Host: evil.example\r\n"
    "X-Forwarded-Port: 443\r\n"
    "Forwarded: for=6.6.6.6;proto=https;host=evil.example\r\n"
    "X-Real-IP: 6.6.6.6\r\n"
)


def test_forwarding_headers_from_an_untrusted_peer_change_nothing_and_never_reach_flask(
    server: GatewayProcess,
) -> None:
    response = get(server.port, "/echo", headers=f"{FORGED}X-Request-ID: e2e-forged-fwd\r\n")
    assert response.status == 200
    seen = response.json()
    # Flask (wrapped in ProxyFix, as real apps are) sees the real peer, scheme and host.
    assert seen["remote_addr"] == "127.0.0.1"
    assert seen["scheme"] == "http"
    assert seen["url"] == "http://127.0.0.1/echo"
    forwarded = [name for name in seen["headers"] if "forwarded" in name or name == "x-real-ip"]
    assert forwarded == []
    [access] = [e for e in server.events_for("e2e-forged-fwd") if e["event"] == "request"]
    assert access["client"].startswith("127.0.0.1:")

    new_side = get(server.port, "/svc/echo", headers=FORGED).json()
    assert new_side == {
        "client": "127.0.0.1",
        "scheme": "http",
        "url": "http://127.0.0.1/svc/echo",
    }


def test_forwarding_headers_from_a_trusted_proxy_set_client_and_scheme(
    behind_proxy: GatewayProcess,
) -> None:
    headers = (
        "X-Forwarded-For: 203.0.113.7\r\n"
        "X-Forwarded-Proto: https\r\n"
        "X-Forwarded-Host: shop.example.test\r\n"
        "X-Request-ID: e2e-trusted-fwd\r\n"
    )
    seen = get(behind_proxy.port, "/echo", headers=headers).json()
    assert seen["remote_addr"] == "203.0.113.7"
    assert seen["scheme"] == "https"
    # Host is never replaced by the gateway; ProxyFix (x_host=1) uses the allowed forwarded one.
    assert seen["url"] == "https://shop.example.test/echo"
    [access] = [e for e in behind_proxy.events_for("e2e-trusted-fwd") if e["event"] == "request"]
    assert access["client"] == "203.0.113.7:0"

    new_side = get(behind_proxy.port, "/svc/echo", headers=headers).json()
    assert new_side["client"] == "203.0.113.7"
    assert new_side["scheme"] == "https"


def test_a_trusted_proxys_forwarded_host_must_be_allowed_too(
    behind_proxy: GatewayProcess,
) -> None:
    response = get(behind_proxy.port, "/redirect", headers="X-Forwarded-Host: evil.example\r\n")
    assert_gateway_error(response, 400)
    assert "location" not in response.headers


# -- 3. Methods ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [b"get", b"GeT", b"M-SEARCH", b"G@T"])
def test_methods_must_be_upper_case_tokens(server: GatewayProcess, method: bytes) -> None:
    response = raw_exchange(
        server.port, method + b" /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    assert_gateway_error(response, 400)


@pytest.mark.parametrize("header", ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"])
def test_method_override_headers_never_change_the_policy_decision(
    server: GatewayProcess, header: str
) -> None:
    # DELETE is admin-only; POST is public. Judged as POST, and Flask (whose middleware would
    # honour the override) never sees the header: it serves a POST.
    response = raw_exchange(
        server.port,
        (
            "POST /admin/items/1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n"
            f"{header}: DELETE\r\nConnection: close\r\n\r\n"
        ).encode(),
    )
    assert response.status == 200
    assert response.json() == {"id": 1, "method": "POST"}
    assert get(server.port, "/echo", headers=f"{header}: DELETE\r\n").json()["method"] == "GET"
    # The policy really is in force for the method the override named.
    denied = raw_exchange(
        server.port,
        b"DELETE /admin/items/1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    assert_gateway_error(denied, 401)


# -- 4. Size and time limits --------------------------------------------------------------------


def test_a_head_over_the_limit_gets_431(server: GatewayProcess) -> None:
    big = "a" * 5000
    response = get(server.port, "/echo", headers=f"X-Big: {big}\r\n")
    assert_gateway_error(response, 431)


def test_a_head_that_never_ends_is_cut_as_soon_as_it_passes_the_limit(
    server: GatewayProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        for _ in range(5):
            sock.sendall(b"a" * 1000)  # no end of line, ever
        response = parse_response(read_all(sock, timeout=5))
    assert_gateway_error(response, 431)


def test_a_partial_head_sent_forever_is_cut_off_within_the_head_timeout(
    server: GatewayProcess,
) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n")
        sock.settimeout(0.3)
        raw = b""
        for index in range(40):  # a header line every 0.3 s, for up to 12 s
            try:
                sock.sendall(f"X-Drip-{index}: 1\r\n".encode())
                raw += sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if raw:
                break
        raw += read_all(sock, timeout=2)
    elapsed = time.monotonic() - started
    assert_gateway_error(parse_response(raw), 408)
    assert elapsed < 2 + 3  # head_timeout is 2 s; a generous bound


def test_a_connection_that_sends_nothing_is_closed_after_the_head_timeout(
    server: GatewayProcess,
) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        assert read_all(sock, timeout=8) == b""  # closed, without a word
    assert time.monotonic() - started < 2 + 3


@pytest.mark.parametrize("target", ["/upload", "/svc/upload"])
def test_a_content_length_over_the_limit_gets_413_before_any_body_is_sent(
    server: GatewayProcess, target: str
) -> None:
    response = raw_exchange(
        server.port,
        f"POST {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n".encode(),
    )
    assert_gateway_error(response, 413)
    assert response.headers["connection"] == "close"


@pytest.mark.parametrize("target", ["/upload", "/svc/upload"])
def test_a_chunked_body_growing_past_the_limit_gets_413(
    server: GatewayProcess, target: str
) -> None:
    chunk = b"258\r\n" + b"x" * 600 + b"\r\n"  # two of them: 1200 bytes, the limit is 1000
    response = raw_exchange(
        server.port,
        f"POST {target} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        + chunk * 2,
    )
    assert_gateway_error(response, 413)


@pytest.mark.parametrize("target", ["/upload", "/svc/upload"])
def test_a_chunked_body_within_the_limit_arrives_whole(server: GatewayProcess, target: str) -> None:
    payload = b"y" * 900
    response = raw_exchange(
        server.port,
        (
            f"POST {target} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        + b"384\r\n"
        + payload
        + b"\r\n0\r\n\r\n",
    )
    assert response.status == 200
    assert response.json() == {"size": 900, "sha256": hashlib.sha256(payload).hexdigest()}


def test_a_route_can_allow_a_larger_body(server: GatewayProcess) -> None:
    payload = b"z" * 50_000
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        assert client.post("/upload", content=payload).status_code == 413
        response = client.post("/upload-big", content=payload)
    assert response.status_code == 200
    assert response.json()["size"] == 50_000


@pytest.mark.parametrize("target", ["/upload", "/svc/upload"])
def test_a_slow_body_gets_408_and_frees_the_legacy_thread(
    server: GatewayProcess, target: str
) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            f"POST {target} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\nhello\r\n".encode()
        )  # ...and never the rest
        started = time.monotonic()
        response = parse_response(read_all(sock, timeout=8))
    assert_gateway_error(response, 408)
    assert time.monotonic() - started < 2 + 3
    # Both legacy threads are free again: two slow requests at once are both served (a thread
    # still stuck reading the body would leave one of them to a 503 after queue_timeout).
    results: list[int] = []

    def call() -> None:
        results.append(get(server.port, "/slow?seconds=0.8").status)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [200, 200]


# -- 5. The legacy request timeout --------------------------------------------------------------


def test_a_legacy_handler_that_does_not_answer_in_time_gets_504_and_keeps_its_slot(
    tmp_path: Path,
) -> None:
    env = sample_env(
        tmp_path,
        GATEWAY_LEGACY__THREADS="1",
        GATEWAY_LEGACY__REQUEST_TIMEOUT="1",
        GATEWAY_LEGACY__QUEUE_TIMEOUT="0.2",
    )
    with GatewayProcess(hardening_config(tmp_path), env=env) as gateway:
        response = get(gateway.port, "/slow?seconds=4", headers="X-Request-ID: e2e-slow\r\n")
        assert_gateway_error(response, 504)
        assert response.json()["request_id"] == "e2e-slow"
        assert b"slow-handler-output" not in response.raw
        # The handler's thread still runs: the pool's one slot is taken, so the bound holds.
        busy = get(gateway.port, "/echo")
        assert_gateway_error(busy, 503)
        assert "retry-after" in busy.headers
        # When the handler finally returns, its output is discarded and the slot comes back.
        assert wait_for(
            lambda: any(e["event"] == "sample.slow_finished" for e in gateway.log_events())
        )
        assert wait_for(lambda: get(gateway.port, "/echo").status == 200, timeout=5)
        events = gateway.events_for("e2e-slow")
    [access] = [e for e in events if e["event"] == "request"]
    assert access["status"] == 504
    assert "legacy.request_timeout" in [e["event"] for e in events]


# -- 6. Nobody starves the legacy pool -----------------------------------------------------------


def test_clients_trickling_small_bodies_hold_no_legacy_thread(server: GatewayProcess) -> None:
    """As many clients as the pool has threads each send 2 of a declared 100 body bytes: the
    bodies are read before a thread is taken, so every other legacy request is still served."""
    sockets = []
    try:
        for _ in range(2 + 1):  # the pool has 2 threads
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nab")
            sockets.append(sock)
        time.sleep(0.3)  # they are all waiting for their bodies now
        started = time.monotonic()
        response = get(server.port, "/echo")
        assert response.status == 200, response.raw[:300]
        assert time.monotonic() - started < 0.5  # not after queue_timeout, not a 503
    finally:
        for sock in sockets:
            sock.close()


def test_a_client_that_stops_reading_cannot_pin_a_legacy_thread(tmp_path: Path) -> None:
    """Two clients ask for a large streamed response and never read it. Each write to them
    stalls; after ``legacy.send_timeout`` their connections are dropped and both threads are
    free again (without the deadline, every other legacy request would get 503 for ever)."""
    env = sample_env(tmp_path, GATEWAY_LEGACY__SEND_TIMEOUT="1")
    with GatewayProcess(hardening_config(tmp_path), env=env) as gateway:
        readers = []
        try:
            for index in range(2):
                sock = socket.socket()
                # A small receive window, so the server's writes stall soon.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", gateway.port))
                sock.sendall(
                    f"GET /big?mb=64 HTTP/1.1\r\nHost: localhost\r\n"
                    f"X-Request-ID: stalled-{index}\r\n\r\n".encode()
                )
                readers.append(sock)
            # While both writes stall, the pool is full...
            assert wait_for(lambda: get(gateway.port, "/echo").status == 503, timeout=5)
            # ...until the send deadline frees both threads.
            assert wait_for(lambda: get(gateway.port, "/echo").status == 200, timeout=10)
            response = get(gateway.port, "/echo")
            assert response.status == 200
        finally:
            for sock in readers:
                sock.close()
        events = [gateway.events_for(f"stalled-{index}") for index in range(2)]
    for stalled in events:
        names = [e["event"] for e in stalled]
        assert "legacy.client_too_slow" in names
        [access] = [e for e in stalled if e["event"] == "request"]
        assert (access["status"], access["aborted"]) == (200, True)


@pytest.mark.parametrize(("target", "backend"), [("/stream", "legacy"), ("/svc/ticks", "svc")])
def test_a_client_that_leaves_mid_stream_is_logged_disconnected(
    server: GatewayProcess, target: str, backend: str
) -> None:
    """A stream that never ends, read for one line, then the client closes: the access line
    says the 200 was not delivered whole, on either side (it used to read like a delivered
    response), and a legacy stream's thread is free again."""
    request_id = f"left-{backend}"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head = f"GET {target} HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: {request_id}\r\n\r\n"
        sock.sendall(head.encode())
        received = b""
        while b"tick" not in received:
            chunk = sock.recv(4096)
            assert chunk, received  # closed before the first line: not a loop for ever
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 ")
    events = server.events_for(request_id)
    [access] = [e for e in events if e["event"] == "request"]
    assert (access["status"], access["backend"], access["disconnected"]) == (200, backend, True)
    assert "aborted" not in access
    # Both legacy threads serve again (the pool has 2): the stream's thread stopped.
    for _ in range(3):
        assert get(server.port, "/echo").status == 200


# -- 7. Clients of every kind --------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/echo", "/svc/echo"])
def test_a_half_closed_connection_still_gets_its_answer(
    server: GatewayProcess, target: str
) -> None:
    """The client sends its request, then shuts its side down (``shutdown(SHUT_WR)``, as some
    clients and proxies do): the answer still comes, then the server closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        sock.shutdown(socket.SHUT_WR)
        raw = read_all(sock, timeout=5)
    response = parse_response(raw)
    assert response.status == 200, raw[:300]
    assert response.headers["x-gateway-backend"] == (
        "svc" if target.startswith("/svc") else "legacy"
    )


def test_an_http_1_0_client_gets_a_close_delimited_body_not_chunks(server: GatewayProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /big?mb=1 HTTP/1.0\r\nHost: localhost\r\n\r\n")
        raw = read_all(sock, timeout=10)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding" not in head.lower()
    assert b"content-length" not in head.lower()
    assert body == b"x" * (1024 * 1024)  # the close ended it; nothing framed it
    # A response with a length keeps it, as before.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /echo HTTP/1.0\r\nHost: localhost\r\n\r\n")
        response = parse_response(read_all(sock, timeout=5))
    assert response.status == 200
    assert int(response.headers["content-length"]) == len(response.body)
