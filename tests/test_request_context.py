"""The request-context middleware around a five-line ASGI app."""

from __future__ import annotations

import json
from typing import Any

import pytest
from structlog.testing import capture_logs
from support import call, http_scope

from gateway.context import request_facts
from gateway.middleware.request_context import RequestContextMiddleware

pytestmark = pytest.mark.anyio


async def ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    facts = request_facts(scope)
    facts.backend = "catalog"
    facts.route = "/things/{id}"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["path"].encode()})


async def failing_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise RuntimeError("secret detail /srv/app/config.py")


async def failing_mid_stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"half", "more_body": True})
    raise RuntimeError("stream broke")


async def test_generates_and_echoes_a_request_id() -> None:
    with capture_logs() as logs:
        exchange = await call(RequestContextMiddleware(ok_app), http_scope("/things/1"))
    request_id = exchange.headers[b"x-request-id"].decode()
    assert len(request_id) == 32
    assert exchange.headers[b"x-gateway-backend"] == b"catalog"
    [line] = [log for log in logs if log["event"] == "request"]
    assert line["request_id"] == request_id
    assert line["method"] == "GET"
    assert line["path"] == "/things/1"
    assert line["route"] == "/things/{id}"
    assert line["backend"] == "catalog"
    assert line["status"] == 200
    assert line["client"] == "127.0.0.1:50000"
    assert line["user"] == "anonymous"
    assert isinstance(line["duration_ms"], float)


async def test_inner_layers_read_the_status_from_the_facts_without_wrapping_send() -> None:
    seen: list[int | None] = []

    async def inner_layer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        facts = request_facts(scope)
        seen.append(facts.status)  # nothing sent yet
        await send({"type": "http.response.start", "status": 418, "headers": []})
        seen.append(facts.status)
        await send({"type": "http.response.body", "body": b"teapot"})

    exchange = await call(RequestContextMiddleware(inner_layer), http_scope("/"))
    assert exchange.status == 418
    assert seen == [None, 418]


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        (b"abc-123", True),
        (b"6f1c2e0a-1b2c-4d5e-8f90-123456789abc", True),
        (b"x" * 128, True),
        (b"x" * 129, False),
        (b"has space", False),
        (b"new\nline", False),
        (b"", False),
    ],
)
async def test_incoming_request_id_is_kept_only_when_valid(incoming: bytes, kept: bool) -> None:
    scope = http_scope("/", headers=[(b"x-request-id", incoming)])
    exchange = await call(RequestContextMiddleware(ok_app), scope)
    assert (exchange.headers[b"x-request-id"] == incoming) is kept


async def test_custom_request_id_header_and_no_backend_header() -> None:
    app = RequestContextMiddleware(
        ok_app, request_id_header="X-Correlation-ID", backend_header=False
    )
    exchange = await call(app, http_scope("/", headers=[(b"x-correlation-id", b"corr-1")]))
    assert exchange.headers[b"x-correlation-id"] == b"corr-1"
    assert b"x-gateway-backend" not in exchange.headers


async def test_exception_becomes_generic_json_500_with_one_error_event() -> None:
    with capture_logs() as logs:
        exchange = await call(RequestContextMiddleware(failing_app), http_scope("/x"))
    assert exchange.status == 500
    body = json.loads(exchange.body)
    request_id = exchange.headers[b"x-request-id"].decode()
    assert body == {
        "error": {"status": 500, "message": "internal server error"},
        "request_id": request_id,
    }
    assert b"secret" not in exchange.body
    errors = [log for log in logs if log["log_level"] == "error"]
    assert len(errors) == 1
    assert errors[0]["event"] == "request.failed"
    assert errors[0]["exc_info"] is True
    [access] = [log for log in logs if log["event"] == "request"]
    assert access["status"] == 500


async def test_failure_after_first_byte_aborts_instead_of_finishing() -> None:
    with capture_logs() as logs, pytest.raises(RuntimeError, match="stream broke"):
        await call(RequestContextMiddleware(failing_mid_stream), http_scope("/x"))
    [access] = [log for log in logs if log["event"] == "request"]
    assert access["aborted"] is True
    assert access["status"] == 200


async def test_an_app_that_ends_without_ending_its_response_is_logged_aborted() -> None:
    async def unfinished(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})

    with capture_logs() as logs:
        await call(RequestContextMiddleware(unfinished), http_scope("/x"))
    [access] = [log for log in logs if log["event"] == "request"]
    assert access["status"] == 200
    assert access["aborted"] is True
    assert "disconnected" not in access


async def test_a_response_the_client_left_is_logged_disconnected_not_aborted() -> None:
    async def client_leaves(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"tick", "more_body": True})
        # What gateway serve's protocol records when the connection drops mid-response.
        request_facts(scope).disconnected = True

    with capture_logs() as logs:
        await call(RequestContextMiddleware(client_leaves), http_scope("/x"))
    [access] = [log for log in logs if log["event"] == "request"]
    assert (access["status"], access["disconnected"]) == (200, True)
    assert "aborted" not in access


async def test_error_after_a_complete_response_is_logged_once_and_not_reraised() -> None:
    async def starlette_style(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # What Starlette's ServerErrorMiddleware does: answer 500, then re-raise.
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"Internal Server Error"})
        raise RuntimeError("handler bug")

    with capture_logs() as logs:
        exchange = await call(RequestContextMiddleware(starlette_style), http_scope("/x"))
    assert exchange.status == 500
    assert exchange.complete
    errors = [log for log in logs if log["log_level"] == "error"]
    assert [error["event"] for error in errors] == ["request.failed"]
    [access] = [log for log in logs if log["event"] == "request"]
    assert access["status"] == 500
    assert "aborted" not in access


async def test_ambiguous_path_is_refused_before_the_app_runs() -> None:
    called = False

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal called
        called = True

    with capture_logs() as logs:
        exchange = await call(
            RequestContextMiddleware(app), http_scope("/a/../admin", raw_path=b"/a/%2e%2e/admin")
        )
    assert not called
    assert exchange.status == 400
    assert json.loads(exchange.body)["error"]["message"].startswith("the request path contains")
    [access] = [log for log in logs if log["event"] == "request"]
    assert access["status"] == 400
    assert access["backend"] == "gateway"


async def test_query_string_in_raw_path_is_not_part_of_the_path() -> None:
    # httpx's ASGI transport puts the query string in raw_path.
    exchange = await call(RequestContextMiddleware(ok_app), http_scope("/q", raw_path=b"/q?x=1"))
    assert exchange.body == b"/q"


async def test_access_log_can_be_switched_off() -> None:
    with capture_logs() as logs:
        await call(RequestContextMiddleware(ok_app, access_log=False), http_scope("/"))
    assert not [log for log in logs if log["event"] == "request"]


async def test_lifespan_passes_through() -> None:
    seen = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    await RequestContextMiddleware(app)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


@pytest.mark.parametrize(
    ("scheme", "cookie", "expected"),
    [
        ("https", b"session=abc; HttpOnly; Path=/", b"session=abc; HttpOnly; Path=/; Secure"),
        ("https", b"session=abc; Secure; HttpOnly", b"session=abc; Secure; HttpOnly"),
        ("https", b"secure=1; Path=/", b"secure=1; Path=/; Secure"),
        ("http", b"session=abc; HttpOnly; Path=/", b"session=abc; HttpOnly; Path=/"),
    ],
)
async def test_cookies_are_secure_on_https(scheme: str, cookie: bytes, expected: bytes) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"set-cookie", cookie), (b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    exchange = await call(RequestContextMiddleware(app), {**http_scope("/"), "scheme": scheme})
    assert exchange.headers[b"set-cookie"] == expected
    assert exchange.headers[b"content-type"] == b"text/plain"
