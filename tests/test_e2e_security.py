"""Security findings from outside testing, each replayed over raw sockets against a real
``gateway serve`` running the demo."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from hardening import parse_response, raw_exchange, read_all
from support import GatewayProcess, demo_config

#: DEMO ONLY: the public demo secret in gateway.toml and the legacy app's fallback.
DEMO_JWT_SECRET = "demo-only-jwt-secret-do-not-use-in-production"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp_path: Path = tmp_path_factory.mktemp("security")
    with GatewayProcess(demo_config(tmp_path)) as gateway:
        yield gateway


def token(gateway: GatewayProcess, username: str, password: str) -> str:
    response = httpx.post(
        f"{gateway.base_url}/api/token", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.mark.parametrize("digit", ["%D9%A1", "%EF%BC%91", "%E0%A5%A7"])  # ١ １ १
def test_unicode_digits_do_not_dodge_the_admin_policy(demo: GatewayProcess, digit: str) -> None:
    """Werkzeug's ``int`` reads any decimal digit: ``PUT /api/books/١`` is book 1 to Flask, so the
    gateway must apply book 1's policy (admin), not the default one."""
    bob = token(demo, "bob", "builder")
    response = raw_exchange(
        demo.port,
        (
            f"PUT /api/books/{digit} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {bob}\r\nContent-Type: application/json\r\n"
            'Content-Length: 15\r\nConnection: close\r\n\r\n{"title":"pwn"}'
        ).encode(),
    )
    assert response.status == 403, response.raw[:300]
    assert response.headers["x-gateway-backend"] == "gateway"
    assert response.json()["error"]["message"] == "missing required role: admin"


def test_unicode_digits_follow_the_routes_flag(demo: GatewayProcess) -> None:
    """The flag at 100% sends ``/api/books/{id}`` to the catalog: so does its Unicode spelling
    (which the catalog, reading ASCII numbers only, refuses), never silently to legacy."""
    response = raw_exchange(
        demo.port,
        b"GET /api/books/%D9%A1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    assert response.headers["x-gateway-backend"] == "catalog"
    assert response.status in (404, 422), response.raw[:300]


def test_a_trailer_never_becomes_a_request_header(demo: GatewayProcess) -> None:
    """A chunked request whose ``Authorization`` comes only in the trailer, in the same packet
    as the head: the trailer is dropped, so the caller is anonymous."""
    alice = token(demo, "alice", "wonderland")
    response = raw_exchange(
        demo.port,
        (
            "GET /admin/users HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            f"Connection: close\r\n\r\n0\r\nAuthorization: Bearer {alice}\r\n\r\n"
        ).encode(),
    )
    assert response.status == 401, response.raw[:300]
    assert response.headers["x-gateway-backend"] == "gateway"
    # The same token as a header is believed (the test proves the trailer, not the token).
    with_header = raw_exchange(
        demo.port,
        (
            "GET /admin/users HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {alice}\r\nConnection: close\r\n\r\n"
        ).encode(),
    )
    assert with_header.status == 200


def test_a_refusal_before_the_body_closes_the_connection(demo: GatewayProcess) -> None:
    """An anonymous chunked upload gets its 401 and the connection ends at once: the server does
    not go on reading (and discarding) a body nobody will use."""
    with socket.create_connection(("127.0.0.1", demo.port), timeout=10) as sock:
        sock.sendall(
            b"POST /admin/users HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            b"\r\n400\r\n" + b"x" * 1024 + b"\r\n"
        )
        started = time.monotonic()
        raw = read_all(sock, timeout=5)
        elapsed = time.monotonic() - started
        # More body after the answer: the server has closed, so nothing is read, nothing
        # answered (a reset or a broken pipe, depending on timing).
        with contextlib.suppress(OSError):
            sock.sendall(b"400\r\n" + b"x" * 1024 + b"\r\n")
    response = parse_response(raw)
    assert response.status == 401
    assert response.headers["connection"] == "close"
    assert elapsed < 4  # closed by the server, not cut by read_all's own timeout


def forged_kid_token(subject: str, roles: list[str]) -> str:
    """Signed with the demo secret the legacy app also trusts, but naming a key the gateway does
    not know (a rotated-out one, say): the gateway refuses it, Flask alone would accept it."""
    now = int(time.time())
    claims = {"sub": subject, "roles": roles, "iat": now, "exp": now + 600}
    return jwt.encode(claims, DEMO_JWT_SECRET, algorithm="HS256", headers={"kid": "rotated-out"})


def test_a_credential_the_gateway_refused_reaches_no_backend(demo: GatewayProcess) -> None:
    refused = forged_kid_token("alice", ["admin"])
    page = httpx.get(f"{demo.base_url}/", headers={"Authorization": f"Bearer {refused}"})
    assert page.status_code == 200
    assert page.headers["x-gateway-backend"] == "legacy"
    assert "Signed in as" not in page.text
    events = demo.events_for(page.headers["x-request-id"])
    [line] = [e for e in events if e["event"] == "request"]
    assert (line["user"], line["auth"]) == ("anonymous", "anonymous")
    # The legacy app does recognise a token the gateway accepted: the check above is not vacuous.
    accepted = token(demo, "alice", "wonderland")
    page = httpx.get(f"{demo.base_url}/", headers={"Authorization": f"Bearer {accepted}"})
    assert "Signed in as alice" in page.text


def test_a_websocket_handshake_with_a_body_is_answered_at_once(demo: GatewayProcess) -> None:
    """It was never answered, and held its socket past every timer (200 of them: 200 fds)."""
    with socket.create_connection(("127.0.0.1", demo.port), timeout=10) as sock:
        sock.sendall(
            b"GET /api/books HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\nContent-Length: 1\r\n\r\nx"
        )
        started = time.monotonic()
        raw = read_all(sock, timeout=8)
    assert time.monotonic() - started < 2
    response = parse_response(raw)
    assert response.status == 400
    assert response.json()["error"]["message"] == "a websocket handshake must not have a body"
    assert response.headers["connection"] == "close"


@pytest.mark.parametrize(
    ("framing", "message"),
    [
        ("Content-Length: 5\t", "the Content-Length header is not a number"),
        ("Content-Length: 5 ", "the Content-Length header is not a number"),
        ("Transfer-Encoding: gzip, chunked", "the only transfer coding accepted is chunked"),
        ("Transfer-Encoding: identity", "the only transfer coding accepted is chunked"),
    ],
)
def test_body_framing_that_parsers_may_read_differently_is_refused(
    demo: GatewayProcess, framing: str, message: str
) -> None:
    response = raw_exchange(
        demo.port,
        f"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n{framing}\r\n\r\n".encode()
        + b"5\r\nhello\r\n0\r\n\r\n",
    )
    assert response.status == 400, response.raw[:300]
    assert response.json()["error"]["message"] == message
    assert response.headers["connection"] == "close"


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("http://evil.example/api/books", 400),
        ("http://127.0.0.1@evil.example/api/books", 400),
        ("HTTPS://evil.example:443/api/books?x=1", 400),
        ("http://localhost/api/books", 200),
    ],
)
def test_an_absolute_form_target_names_the_host_that_is_checked(
    demo: GatewayProcess, target: str, status: int
) -> None:
    response = raw_exchange(
        demo.port,
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode(),
    )
    assert response.status == status, response.raw[:300]
    if status == 400:
        assert response.headers["x-gateway-backend"] == "gateway"


def test_a_websocket_handshake_to_a_gateway_endpoint_is_refused_not_a_500(
    demo: GatewayProcess,
) -> None:
    response = raw_exchange(
        demo.port,
        b"GET /_gateway/health HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n",
    )
    assert response.status == 403, response.raw[:300]


def session_cookie(gateway: GatewayProcess, username: str, password: str) -> str:
    response = httpx.post(
        f"{gateway.base_url}/login", data={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    return str(response.cookies["session"])


def test_two_session_cookies_are_one_user_for_the_gateway_and_the_session_bridge(
    demo: GatewayProcess,
) -> None:
    """``Cookie: session=<bob>; session=<alice>``: the gateway authenticates the first, as Flask
    reads it, and the session a new service writes back is that same user's, never alice's."""
    bob = session_cookie(demo, "bob", "builder")
    alice = session_cookie(demo, "alice", "wonderland")
    response = raw_exchange(
        demo.port,
        (
            "PUT /api/preferences HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Cookie: session={bob}; session={alice}\r\nContent-Type: application/json\r\n"
            'Content-Length: 16\r\nConnection: close\r\n\r\n{"theme":"dark"}'
        ).encode(),
    )
    assert response.status == 200, response.raw[:300]
    assert response.headers["x-gateway-backend"] == "accounts"
    written = response.headers["set-cookie"].split(";", 1)[0].removeprefix("session=")
    # Whose session came back: ask the legacy app, which reads only the cookie.
    me = httpx.get(f"{demo.base_url}/api/me", cookies={"session": written})
    assert me.json()["username"] == "bob"
