"""The auth middleware around a five-line ASGI app, with fake backends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.datastructures import Headers
from structlog.testing import capture_logs
from support import call, http_scope

from gateway.auth.policy import authorize, build_policies
from gateway.context import ANONYMOUS, Identity, request_facts
from gateway.errors import InvalidCredentials
from gateway.middleware.auth import AuthMiddleware
from gateway.middleware.request_context import RequestContextMiddleware

pytestmark = pytest.mark.anyio

ALICE = Identity("alice", frozenset({"admin"}), "session")
BOB = Identity("bob", frozenset({"user"}), "jwt")


class FakeBackend:
    """Answers from a header: ``x-fake-<name>: <subject>``, or ``bad`` for an invalid one."""

    def __init__(self, name: str, identities: dict[str, Identity]) -> None:
        self.name = name
        self._identities = identities
        self.credential_headers = frozenset({f"x-fake-{name}".encode()})

    async def authenticate(self, headers: Headers) -> Identity | None:
        value = headers.get(f"x-fake-{self.name}")
        if value is None:
            return None
        if value == "bad":
            raise InvalidCredentials("bad signature")
        if value == "boom":
            raise RuntimeError("key file vanished")
        return self._identities[value]

    def without_credential(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        header = f"x-fake-{self.name}".encode()
        return [(name, value) for name, value in headers if name != header]


seen: list[dict[str, Any]] = []


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    facts = request_facts(scope)
    seen.append({"identity": facts.identity, "headers": dict(scope["headers"])})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": (facts.identity.subject or "-").encode()})


POLICIES = build_policies(
    [
        ("/public", (), "public", ()),
        ("/admin/{rest:path}", (), None, ("admin",)),
        ("/books/{id:int}", ("PUT", "DELETE"), None, ("admin",)),
        ("/books/{id:int}", ("GET",), "public", ()),
    ],
    "authenticated",
)


def gateway() -> RequestContextMiddleware:
    backends = [
        FakeBackend("jwt", {"bob": BOB, "alice": ALICE}),
        FakeBackend("session", {"alice": ALICE, "bob": BOB}),
    ]
    auth = AuthMiddleware(
        echo_app, backends=backends, policies=POLICIES, strip_headers=["X-User-Id"]
    )
    return RequestContextMiddleware(auth)


def scope(path: str, method: str = "GET", **headers: str) -> dict[str, Any]:
    raw = [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()]
    return http_scope(path, method, raw)


@pytest.mark.parametrize(
    ("path", "method", "headers", "status", "subject"),
    [
        ("/public", "GET", {}, 200, "-"),
        ("/private", "GET", {}, 401, None),
        ("/private", "GET", {"x_fake_session": "alice"}, 200, "alice"),
        ("/admin/users", "GET", {"x_fake_session": "alice"}, 200, "alice"),
        ("/admin/users", "GET", {"x_fake_jwt": "bob"}, 403, None),
        ("/admin/a/b", "POST", {}, 401, None),
        ("/books/1", "GET", {}, 200, "-"),
        ("/books/1", "PUT", {"x_fake_jwt": "bob"}, 403, None),
        ("/books/1", "DELETE", {"x_fake_session": "alice"}, 200, "alice"),
        # Not the int route: the default (authenticated) applies.
        ("/books/x", "GET", {}, 401, None),
        # Precedence: jwt is listed first, so its user wins over the session's.
        ("/private", "GET", {"x_fake_jwt": "bob", "x_fake_session": "alice"}, 200, "bob"),
        # An invalid credential alone: anonymous, so a protected path says 401...
        ("/private", "GET", {"x_fake_jwt": "bad"}, 401, None),
        # ...and a public path still serves (as Flask ignores a stale cookie).
        ("/public", "GET", {"x_fake_jwt": "bad"}, 200, "-"),
        # A valid session beside an invalid token still identifies the user.
        ("/private", "GET", {"x_fake_jwt": "bad", "x_fake_session": "alice"}, 200, "alice"),
        # Probes never need credentials, whatever the default.
        ("/_gateway/health", "GET", {}, 200, "-"),
        ("/_gateway/ready", "GET", {}, 200, "-"),
    ],
)
async def test_policy_matrix(
    path: str, method: str, headers: dict[str, str], status: int, subject: str | None
) -> None:
    exchange = await call(gateway(), scope(path, method, **headers))
    assert exchange.status == status
    if status == 200:
        assert exchange.body.decode() == subject
        return
    body = json.loads(exchange.body)
    assert body["error"]["status"] == status
    assert body["request_id"] == exchange.headers[b"x-request-id"].decode()
    assert exchange.headers[b"x-gateway-backend"] == b"gateway"
    if status == 401:
        assert exchange.headers[b"www-authenticate"].startswith(b'Bearer realm="gateway"')
    else:
        assert body["error"]["message"] == "missing required role: admin"


async def test_invalid_token_challenge_says_so() -> None:
    exchange = await call(gateway(), scope("/private", x_fake_jwt="bad"))
    assert exchange.headers[b"www-authenticate"] == b'Bearer realm="gateway", error="invalid_token"'


async def test_failing_backend_fails_closed() -> None:
    seen.clear()
    with capture_logs() as logs:
        exchange = await call(gateway(), scope("/public", x_fake_jwt="boom"))
    assert exchange.status == 503
    assert json.loads(exchange.body)["error"]["message"] == "authentication is unavailable"
    assert seen == []  # never forwarded, not even to a public route
    assert [log["event"] for log in logs if log["log_level"] == "error"] == ["auth.backend_failed"]


async def test_identity_headers_never_reach_the_app() -> None:
    seen.clear()
    with capture_logs() as logs:
        exchange = await call(
            gateway(), scope("/public", x_user_id="alice", x_trace="t", X_Other="1")
        )
    assert exchange.status == 200
    forwarded = seen[0]["headers"]
    assert b"x-user-id" not in forwarded
    assert forwarded[b"x-trace"] == b"t"
    assert seen[0]["identity"] is ANONYMOUS
    assert "auth.identity_headers_removed" in [log["event"] for log in logs]


@pytest.mark.parametrize(
    ("headers", "forwarded", "subject"),
    [
        # A refused credential is removed; the valid one beside it stays for the backend.
        ({"x_fake_jwt": "bad", "x_fake_session": "alice"}, {b"x-fake-session": b"alice"}, "alice"),
        ({"x_fake_jwt": "bad"}, {}, "-"),
        # Valid credentials all travel on: the legacy app may need its own session cookie.
        (
            {"x_fake_jwt": "bob", "x_fake_session": "alice"},
            {b"x-fake-jwt": b"bob", b"x-fake-session": b"alice"},
            "bob",
        ),
    ],
)
async def test_a_refused_credential_reaches_no_backend(
    headers: dict[str, str], forwarded: dict[bytes, bytes], subject: str
) -> None:
    seen.clear()
    exchange = await call(gateway(), scope("/public", **headers))
    assert exchange.status == 200
    assert exchange.body.decode() == subject
    sent = {k: v for k, v in seen[0]["headers"].items() if k.startswith(b"x-fake-")}
    assert sent == forwarded


@pytest.mark.parametrize(
    ("headers", "closes"),
    [
        ([(b"content-length", b"10")], True),
        ([(b"transfer-encoding", b"chunked")], True),
        ([(b"content-length", b"0")], False),
        ([], False),
    ],
)
async def test_a_refusal_before_the_body_is_read_closes_the_connection(
    headers: list[tuple[bytes, bytes]], closes: bool
) -> None:
    """The body is never read: a server that kept the connection would parse (and throw away)
    whatever the client goes on sending, as if it were the next request."""
    exchange = await call(gateway(), http_scope("/private", "POST", headers))
    assert exchange.status == 401
    assert (exchange.headers.get(b"connection") == b"close") is closes


async def test_duplicate_authorization_is_refused() -> None:
    seen.clear()
    headers = [(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")]
    exchange = await call(gateway(), http_scope("/public", headers=headers))
    assert exchange.status == 400
    assert seen == []


async def test_access_line_names_the_identity() -> None:
    with capture_logs() as logs:
        await call(gateway(), scope("/private", x_fake_session="alice"))
        await call(gateway(), scope("/private"))
    lines = [log for log in logs if log["event"] == "request"]
    assert (lines[0]["user"], lines[0]["auth"]) == ("alice", "session")
    assert (lines[1]["user"], lines[1]["auth"], lines[1]["status"]) == (
        "anonymous",
        "anonymous",
        401,
    )
    assert lines[1]["denied"] == "authentication required"


async def test_websocket_without_credentials_is_closed() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    ws_scope = {**http_scope("/private"), "type": "websocket"}
    await gateway()(ws_scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


@pytest.mark.parametrize(
    ("identity", "status"),
    [
        (ANONYMOUS, 401),
        (BOB, 403),
        (ALICE, 200),
        (Identity("carol", frozenset({"admin", "x"})), 200),
    ],
)
def test_decide_roles(identity: Identity, status: int) -> None:
    policy = POLICIES.lookup("GET", "/admin/users")
    assert authorize(policy, identity).status == status


async def test_backends_are_asked_only_when_a_header_they_read_is_there() -> None:
    asked: list[str] = []

    class Counting(FakeBackend):
        async def authenticate(self, headers: Headers) -> Identity | None:
            asked.append(self.name)
            return await super().authenticate(headers)

    backends = [Counting("jwt", {"bob": BOB}), Counting("session", {"alice": ALICE})]
    app = RequestContextMiddleware(AuthMiddleware(echo_app, backends=backends, policies=POLICIES))
    anonymous = await call(app, scope("/public", accept="*/*", cookie="theme=dark"))
    assert (anonymous.status, anonymous.body, asked) == (200, b"-", [])
    # One header a backend reads: all are asked, in order (precedence and conflicts as before).
    known = await call(app, scope("/private", x_fake_session="alice"))
    assert (known.status, known.body, asked) == (200, b"alice", ["jwt", "session"])
    # Without credentials the policy still applies: anonymous on a protected path is 401.
    assert (await call(app, scope("/private"))).status == 401


async def test_the_demo_backends_find_nothing_without_the_headers_they_declare() -> None:
    """What makes skipping them sound: each real backend, given every header but its own, says
    ``None`` (no credential of its kind), not an identity and not an error."""
    from gateway.build import build_auth
    from gateway.settings import load_settings
    from legacy_flask import create_app

    settings = load_settings(Path(__file__).parent.parent / "gateway.toml", {})
    backends = build_auth(settings, create_app()).backends
    assert {backend.name for backend in backends} == {"jwt", "session", "api-key"}
    every = [
        (b"authorization", b"Bearer not.a.token"),
        (b"cookie", b"session=forged"),
        (b"x-api-key", b"not-a-key"),
        (b"accept", b"*/*"),
    ]
    for backend in backends:
        others = [(n, v) for n, v in every if n not in backend.credential_headers]
        assert await backend.authenticate(Headers(raw=others)) is None, backend.name
        with pytest.raises(InvalidCredentials):
            await backend.authenticate(Headers(raw=every))
