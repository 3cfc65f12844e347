"""The request checks: each concern called on its own, and the one layer that runs all three."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.datastructures import Headers
from support import call, demo_config, http_scope

from gateway.app import create_app
from gateway.auth.policy import build_policies
from gateway.context import FACTS_KEY, Identity, RequestFacts
from gateway.errors import Refusal
from gateway.middleware.auth import Authenticator
from gateway.middleware.checks import RequestChecksMiddleware
from gateway.middleware.header_scan import HeaderScan, HeaderScanner
from gateway.middleware.limits import BodyLimit, BodyLimits
from gateway.middleware.request_context import RequestContextMiddleware
from gateway.middleware.request_head import RequestHead
from gateway.request_body import declared_body_size
from gateway.settings import load_settings

pytestmark = pytest.mark.anyio

ALICE = Identity("alice", frozenset({"admin"}), "api-key")


class KeyBackend:
    """``x-key: alice`` is alice; any other value is no one."""

    name = "key"
    credential_headers = frozenset({b"x-key"})

    async def authenticate(self, headers: Headers) -> Identity | None:
        return ALICE if headers.get("x-key") == "alice" else None

    def without_credential(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        return [(name, value) for name, value in headers if name != b"x-key"]


POLICIES = build_policies([("/open", (), "public", ())], "authenticated")


def concerns() -> dict[str, Any]:
    return {
        "head": RequestHead(allowed_hosts=["localhost"]),
        "limits": BodyLimits(
            max_body_size=10,
            body_timeout=5.0,
            routes=[BodyLimit("/open/big", frozenset({"POST"}), 1000, 5.0)],
        ),
        "auth": Authenticator(backends=[KeyBackend()], policies=POLICIES),
    }


def request(
    path: str, *, method: str = "GET", host: bytes = b"localhost", **headers: str
) -> dict[str, Any]:
    raw = [(b"host", host)] + [
        (k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()
    ]
    scope = http_scope(path, method, raw)
    scope[FACTS_KEY] = RequestFacts(request_id="rid", path=path, method=method)
    return scope


reached: list[str] = []


async def backend(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    more = scope["method"] == "POST"
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    reached.append(scope["path"])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body or b"ok"})


# -- each concern on its own, no ASGI ------------------------------------------------------------


def scanned(scope: dict[str, Any]) -> HeaderScan:
    return HeaderScanner(credential_headers=[b"x-key"]).scan(scope["headers"])


def test_the_request_head_refuses_or_passes_as_a_plain_call() -> None:
    head = RequestHead(allowed_hosts=["localhost"])

    def check(scope: dict[str, Any]) -> Refusal | None:
        return head.check(scope, scanned(scope))

    assert check(request("/x")) is None
    assert check(request("/x", host=b"evil.org")) == Refusal(
        400, "the Host header names a host this server won't serve"
    )
    assert check(request("/x", method="get")) == Refusal(
        400, "the request method must be an upper-case token"
    )
    # An override header is removed from the scope it was given, and the request goes on.
    overridden = request("/x", x_http_method_override="DELETE")
    assert check(overridden) is None
    assert [name for name, _ in overridden["headers"]] == [b"host"]


def test_the_body_limits_guard_only_requests_with_a_body() -> None:
    limits = concerns()["limits"]

    def guard(scope: dict[str, Any]) -> Any:
        return limits.guard(scope, None, None, scanned(scope).declared)

    assert guard(request("/x", method="POST")) is None
    assert guard(request("/x", method="POST", content_length="11")) == Refusal(
        413, "the request body is larger than 10 bytes"
    )
    # The route's own limit, and a chunked body of unknown size, are guarded, not refused.
    assert not isinstance(
        guard(request("/open/big", method="POST", content_length="500")), Refusal | None
    )
    chunked = request("/x", method="POST", transfer_encoding="chunked")
    assert not isinstance(guard(chunked), Refusal | None)


async def test_authentication_asks_the_backends_only_for_a_credential() -> None:
    auth = concerns()["auth"]
    plain = request("/private")
    facts = plain[FACTS_KEY]
    assert auth.screen(plain, facts, scanned(plain)) is False
    refusal = auth.admit(facts, ())
    assert refusal is not None
    assert (refusal.status, refusal.denied) == (401, True)
    assert refusal.headers == ((b"www-authenticate", b'Bearer realm="gateway"'),)
    assert auth.admit(request("/open")[FACTS_KEY], ()) is None

    keyed = request("/private", x_key="alice")
    facts = keyed[FACTS_KEY]
    assert auth.screen(keyed, facts, scanned(keyed)) is True
    assert await auth.identify(keyed, facts) == []
    assert facts.identity == ALICE
    assert auth.admit(facts, []) is None

    twice = request("/private", authorization="Bearer a")
    twice["headers"].append((b"authorization", b"Bearer b"))
    assert auth.screen(twice, twice[FACTS_KEY], scanned(twice)) == Refusal(
        400, "more than one Authorization header"
    )


# -- the one walk over the headers ----------------------------------------------------------------


def test_the_scan_finds_what_each_check_reads() -> None:
    scanner = HeaderScanner(
        credential_headers=[b"authorization", b"cookie", b"x-api-key"],
        strip_headers=[b"x-user-id", b"x-forwarded-user"],
    )
    plain = scanner.scan([(b"host", b"a"), (b"accept", b"*/*"), (b"x-trace", b"1")])
    assert plain == HeaderScan(host=b"a", hosts=1)

    scan = scanner.scan(
        [
            (b"host", b"a"),
            (b"host", b"b"),
            (b"cookie", "s=é".encode("latin-1")),
            (b"authorization", b"Bearer x"),
            (b"authorization", b"Bearer y"),
            (b"x-user-id", b"root"),
            (b"content-length", b"12"),
        ]
    )
    assert (scan.host, scan.hosts, scan.bad_cookie) == (b"b", 2, True)
    assert (scan.authorizations, scan.credential, scan.strip) == (2, True, True)
    assert (scan.special, scan.declared) == (False, 12)

    # A UTF-8 cookie is fine; it is a credential (the session backend reads it).
    cookie = scanner.scan([(b"cookie", "s=é".encode())])
    assert (cookie.bad_cookie, cookie.credential) == (False, True)
    # An identity header to strip is not a credential, even when its name could be one.
    stripped = scanner.scan([(b"x-user-id", b"root")])
    assert (stripped.strip, stripped.credential) == (True, False)


@pytest.mark.parametrize(
    "name",
    [
        b"x-forwarded-for",
        b"x-forwarded-anything",
        b"forwarded",
        b"x-real-ip",
        b"x-http-method-override",
        b"x-http-method",
        b"x-method-override",
        # Configured as an identity header to strip, and still a forwarding header.
        b"x-forwarded-user",
    ],
)
def test_the_scan_notices_every_forwarding_and_override_header(name: bytes) -> None:
    scanner = HeaderScanner(strip_headers=[b"x-forwarded-user"])
    assert scanner.scan([(b"host", b"a"), (name, b"v")]).special
    assert not scanner.scan([(b"host", b"a"), (b"x-forwardedfor", b"v"), (b"x", b"v")]).special


_NAMES = st.sampled_from([b"content-length", b"transfer-encoding", b"host", b"x-a"])
_VALUES = st.sampled_from([b"0", b"7", b"123", b"", b"1x", b"chunked", b"-1"])


@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=5))
def test_the_scan_declares_the_body_size_as_the_body_module_does(
    headers: list[tuple[bytes, bytes]],
) -> None:
    assert HeaderScanner().scan(headers).declared == declared_body_size({"headers": headers})


async def test_a_stripped_identity_header_never_reaches_the_backend_or_counts() -> None:
    auth = Authenticator(backends=[KeyBackend()], policies=POLICIES, strip_headers=["X-Key"])
    app = RequestContextMiddleware(RequestChecksMiddleware(backend, auth=auth))
    # x-key is both the backend's credential and an identity header to strip: stripped first.
    exchange = await call(app, request("/private", x_key="alice"))
    assert exchange.status == 401


# -- the one layer -------------------------------------------------------------------------------


async def test_the_checks_run_in_order_and_the_first_refusal_answers() -> None:
    app = RequestContextMiddleware(RequestChecksMiddleware(backend, **concerns()))
    reached.clear()
    # A bad host, an oversized body and no credentials: the head answers first...
    exchange = await call(
        app, request("/private", method="POST", host=b"evil.org", content_length="11"), [b"x" * 11]
    )
    assert exchange.status == 400
    # ...then the limits, before authentication...
    exchange = await call(app, request("/private", method="POST", content_length="11"), [b"x" * 11])
    assert exchange.status == 413
    assert exchange.headers[b"connection"] == b"close"
    # ...then the access policy.
    exchange = await call(app, request("/private", method="POST", content_length="3"), [b"abc"])
    assert exchange.status == 401
    body = json.loads(exchange.body)
    assert body["error"]["message"] == "authentication required"
    assert body["request_id"]
    assert reached == []
    # All three passed: the backend reads the body under the guard.
    exchange = await call(
        app, request("/private", method="POST", content_length="3", x_key="alice"), [b"abc"]
    )
    assert (exchange.status, exchange.body) == (200, b"abc")
    assert reached == ["/private"]


async def test_a_body_that_breaks_the_limit_while_read_still_gets_the_limits_answer() -> None:
    app = RequestContextMiddleware(RequestChecksMiddleware(backend, **concerns()))
    # Chunked: no declared size, so the bytes that arrive are counted.
    scope = request("/open", method="POST", transfer_encoding="chunked")
    exchange = await call(app, scope, [b"x" * 6, b"x" * 6])
    assert exchange.status == 413
    assert json.loads(exchange.body)["error"]["message"] == (
        "the request body is larger than 10 bytes"
    )


async def test_a_websocket_is_checked_without_body_limits() -> None:
    closed: list[dict[str, Any]] = []
    app = RequestChecksMiddleware(backend, **concerns())

    async def send(message: dict[str, Any]) -> None:
        closed.append(message)

    scope = request("/private")
    scope["type"] = "websocket"
    await app(scope, None, send)
    assert closed == [{"type": "websocket.close", "code": 1008}]


async def test_other_scopes_pass_untouched() -> None:
    seen: list[str] = []

    async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    await RequestChecksMiddleware(lifespan, **concerns())({"type": "lifespan"}, None, None)
    assert seen == ["lifespan"]


def test_the_gateway_runs_its_checks_in_one_layer(tmp_path: Path) -> None:
    app = create_app(load_settings(demo_config(tmp_path), {}))
    chain = [app.path.handler]
    while hasattr(chain[-1], "app"):
        chain.append(chain[-1].app)
    checks = [link for link in chain if isinstance(link, RequestChecksMiddleware)]
    assert len(checks) == 1
    (layer,) = checks
    assert isinstance(chain[0], RequestContextMiddleware)
    assert chain[1] is layer
    assert isinstance(layer.head, RequestHead)
    assert isinstance(layer.limits, BodyLimits)
    assert isinstance(layer.auth, Authenticator)
