"""RequestHeadMiddleware around a five-line ASGI app: hosts, forwarding, methods, overrides."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import call, http_scope

from gateway.context import FACTS_KEY, RequestFacts
from gateway.http_tokens import host_pattern_problem, trusted_proxy_problem
from gateway.middleware.request_head import RequestHeadMiddleware

pytestmark = pytest.mark.anyio


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    seen = {
        "client": scope["client"][0],
        "scheme": scope["scheme"],
        "headers": sorted(name.decode() for name, _ in scope["headers"]),
    }
    body = json.dumps(seen).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def scope_with(
    headers: list[tuple[bytes, bytes]], *, method: str = "GET", client: str = "127.0.0.1"
) -> dict[str, Any]:
    scope = http_scope("/x", method=method, headers=headers)
    scope["client"] = (client, 5000)
    scope[FACTS_KEY] = RequestFacts(request_id="rid", path="/x", method=method)
    return scope


HOSTS = ["127.0.0.1", "localhost", "[::1]", "*.example.com"]


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        (b"localhost", True),
        (b"localhost:8000", True),
        (b"LocalHost:1", True),
        (b"127.0.0.1:8000", True),
        (b"[::1]:8000", True),
        (b"[::1]", True),
        (b"api.example.com", True),
        (b"a.b.example.com:443", True),
        (b"example.com", False),
        (b"evilexample.com", False),
        (b"example.com.evil.org", False),
        (b"localhost.evil.org", False),
        (b"[::2]", False),
        (b"localhost:80:80", False),
        (b"localhost@evil.org", False),
        (b"localhost/x", False),
        (b"", False),
        (b"local host", False),
    ],
)
async def test_hosts(host: bytes, allowed: bool) -> None:
    app = RequestHeadMiddleware(echo, allowed_hosts=HOSTS)
    exchange = await call(app, scope_with([(b"host", host)]))
    assert exchange.status == (200 if allowed else 400)
    if not allowed:
        assert json.loads(exchange.body)["request_id"] == "rid"


async def test_star_allows_any_well_formed_host_but_still_one() -> None:
    app = RequestHeadMiddleware(echo, allowed_hosts=["*"])
    assert (await call(app, scope_with([(b"host", b"anything.org:1")]))).status == 200
    assert (await call(app, scope_with([(b"host", b"a"), (b"host", b"b")]))).status == 400
    assert (await call(app, scope_with([(b"host", b"a b")]))).status == 400


async def test_missing_host_is_refused_on_http11_only() -> None:
    app = RequestHeadMiddleware(echo)
    assert (await call(app, scope_with([]))).status == 400
    scope = scope_with([])
    scope["http_version"] = "1.0"
    assert (await call(app, scope)).status == 200


FORWARDING = [
    (b"host", b"localhost"),
    (b"x-forwarded-for", b"6.6.6.6, 10.0.0.2"),
    (b"x-forwarded-proto", b"https"),
    (b"x-forwarded-host", b"localhost"),
    (b"forwarded", b"for=6.6.6.6"),
    (b"x-real-ip", b"6.6.6.6"),
    (b"x-http-method-override", b"DELETE"),
    (b"x-request-id", b"kept"),
]


@pytest.mark.parametrize(
    ("trusted", "peer", "client", "scheme", "headers"),
    [
        ([], "10.0.0.2", "10.0.0.2", "http", ["host", "x-request-id"]),
        (["10.0.0.1"], "10.0.0.2", "10.0.0.2", "http", ["host", "x-request-id"]),
        (
            ["10.0.0.0/8"],
            "10.0.0.2",
            "6.6.6.6",  # 10.0.0.2 in the list is a trusted proxy too: skipped
            "https",
            [
                "forwarded",
                "host",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-proto",
                "x-real-ip",
                "x-request-id",
            ],
        ),
        (["10.0.0.1"], "10.0.0.1", "10.0.0.2", "https", None),  # right-most untrusted entry
        (["*"], "10.0.0.2", "6.6.6.6", "https", None),
    ],
)
async def test_forwarding_headers_are_believed_only_from_trusted_proxies(
    trusted: list[str], peer: str, client: str, scheme: str, headers: list[str] | None
) -> None:
    app = RequestHeadMiddleware(echo, allowed_hosts=["localhost"], trusted_proxies=trusted)
    exchange = await call(app, scope_with(FORWARDING, client=peer))
    seen = json.loads(exchange.body)
    assert seen["client"] == client
    assert seen["scheme"] == scheme
    assert "x-http-method-override" not in seen["headers"]  # removed for everyone
    if headers is not None:
        assert seen["headers"] == headers


async def test_a_trusted_proxys_forwarded_host_is_checked() -> None:
    app = RequestHeadMiddleware(echo, allowed_hosts=["localhost"], trusted_proxies=["*"])
    headers = [(b"host", b"localhost"), (b"x-forwarded-host", b"evil.org")]
    assert (await call(app, scope_with(headers))).status == 400


async def test_a_malformed_forwarded_for_is_not_believed() -> None:
    app = RequestHeadMiddleware(echo, allowed_hosts=["localhost"], trusted_proxies=["*"])
    headers = [(b"host", b"localhost"), (b"x-forwarded-for", b"6.6.6.6, not-an-ip")]
    assert json.loads((await call(app, scope_with(headers))).body)["client"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("method", "status"),
    [("GET", 200), ("PROPFIND", 200), ("get", 400), ("M-SEARCH", 400), ("G\x00T", 400)],
)
async def test_methods(method: str, status: int) -> None:
    app = RequestHeadMiddleware(echo, allowed_hosts=["localhost"])
    exchange = await call(app, scope_with([(b"host", b"localhost")], method=method))
    assert exchange.status == status


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [
        ("localhost", True),
        ("*", True),
        ("*.example.com", True),
        ("[::1]", True),
        ("localhost:8000", False),
        ("*example.com", False),
        ("a.*.com", False),
        ("", False),
    ],
)
def test_host_patterns(pattern: str, ok: bool) -> None:
    assert (host_pattern_problem(pattern) is None) == ok


@pytest.mark.parametrize(
    ("entry", "ok"), [("10.0.0.1", True), ("10.0.0.0/8", True), ("::1", True), ("proxy", False)]
)
def test_trusted_proxy_entries(entry: str, ok: bool) -> None:
    assert (trusted_proxy_problem(entry) is None) == ok
