"""LimitsMiddleware around small ASGI apps: counted bytes, deadlines, who answers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hardening import TESTS, hardening_config
from starlette.testclient import TestClient
from structlog.testing import capture_logs
from support import call, http_scope

from gateway.app import create_app
from gateway.context import FACTS_KEY, RequestFacts
from gateway.middleware.limits import BodyLimit, LimitsMiddleware
from gateway.settings import load_settings

pytestmark = pytest.mark.anyio


async def read_body(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body and answers its size."""
    size = 0
    more = True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


async def answers_its_own_error(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Catches whatever receive raises and answers 500, like a framework's error handler."""
    try:
        while (await receive()).get("more_body"):
            pass
    except Exception:
        await send({"type": "http.response.start", "status": 500, "headers": []})
        await send({"type": "http.response.body", "body": b"handler's own 500"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def streams_then_reads(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Starts its response, then reads the body."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.body", "body": b"end"})


def scope_with(headers: list[tuple[bytes, bytes]], path: str = "/x") -> dict[str, Any]:
    scope = http_scope(path, method="POST", headers=headers)
    scope[FACTS_KEY] = RequestFacts(request_id="rid", path=path, method="POST")
    return scope


CHUNKED = [(b"transfer-encoding", b"chunked")]


def limited(app: Any, **options: Any) -> LimitsMiddleware:
    return LimitsMiddleware(app, **{"max_body_size": 100, "body_timeout": 5.0, **options})


@pytest.mark.parametrize(
    ("headers", "chunks", "status", "body"),
    [
        ([(b"content-length", b"100")], [b"x" * 100], 200, b"100"),
        ([(b"content-length", b"101")], [], 413, None),  # refused before reading
        (CHUNKED, [b"x" * 60, b"x" * 40], 200, b"100"),
        (CHUNKED, [b"x" * 60, b"x" * 41], 413, None),
        # A Content-Length that lies low does not buy more bytes.
        ([(b"content-length", b"10")], [b"x" * 60, b"x" * 60], 413, None),
        ([], [b""], 200, b"0"),
    ],
)
async def test_sizes_are_counted_on_the_bytes_that_arrive(
    headers: list[tuple[bytes, bytes]], chunks: list[bytes], status: int, body: bytes | None
) -> None:
    exchange = await call(limited(read_body), scope_with(headers), chunks)
    assert exchange.status == status
    if body is not None:
        assert exchange.body == body
    else:
        error = json.loads(exchange.body)
        assert error["request_id"] == "rid"
        assert (b"connection", b"close") in exchange.messages[0]["headers"]


async def test_the_limit_answers_in_place_of_the_backends_own_error() -> None:
    with capture_logs() as logs:
        exchange = await call(limited(answers_its_own_error), scope_with(CHUNKED), [b"x"] * 200)
    assert exchange.status == 413
    assert b"handler's own 500" not in exchange.body
    assert exchange.complete
    assert [log["event"] for log in logs] == ["request.body_rejected"]


async def test_crossing_the_limit_after_the_response_started_aborts_it() -> None:
    with pytest.raises(Exception, match="larger than 100 bytes"):
        await call(limited(streams_then_reads), scope_with(CHUNKED), [b"x" * 80, b"x" * 80])


async def test_a_slow_body_gets_408() -> None:
    async def slow_receive_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await read_body(scope, receive, send)

    scope = scope_with(CHUNKED)
    started = asyncio.get_running_loop().time()

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(10)
        return {"type": "http.request", "body": b"late", "more_body": False}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await limited(slow_receive_app, body_timeout=0.2)(scope, receive, send)
    assert sent[0]["status"] == 408
    assert asyncio.get_running_loop().time() - started < 2


async def test_after_the_body_receive_is_no_longer_timed() -> None:
    """Streamed responses wait on receive() for a disconnect, far past any body deadline."""
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"x", "more_body": False}
        await asyncio.sleep(0.4)
        return {"type": "http.disconnect"}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        assert (await receive())["type"] == "http.disconnect"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await limited(app, body_timeout=0.1)(scope_with(CHUNKED), receive, send)
    assert sent[0]["status"] == 200


async def test_per_route_limits_override_the_default() -> None:
    rules = [BodyLimit("/uploads/{name}", frozenset({"POST"}), 1000, 5.0)]
    app = limited(read_body, routes=rules)
    big = [b"x" * 500]
    assert (await call(app, scope_with(CHUNKED, "/uploads/a"), big)).status == 200
    assert (await call(app, scope_with(CHUNKED, "/other"), big)).status == 413


@pytest.mark.parametrize(
    ("variables", "fields", "multipart", "status"),
    [
        ({}, 20, False, 200),
        ({"GATEWAY_LIMITS__MAX_FORM_PARTS": "5"}, 5, False, 200),
        # Url-encoded: Werkzeug has no limit of its own; the gateway counts.
        ({"GATEWAY_LIMITS__MAX_FORM_PARTS": "5"}, 6, False, 413),
        ({"GATEWAY_LIMITS__MAX_FORM_MEMORY_SIZE": "100"}, 20, False, 413),
        # Multipart: the Flask app's own MAX_FORM_PARTS, set from [limits].
        ({"GATEWAY_LIMITS__MAX_FORM_PARTS": "5"}, 5, True, 200),
        ({"GATEWAY_LIMITS__MAX_FORM_PARTS": "5"}, 6, True, 413),
    ],
)
def test_form_limits_hold_for_the_legacy_app(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variables: dict[str, str],
    fields: int,
    multipart: bool,
    status: int,
) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    settings = load_settings(hardening_config(tmp_path), variables)
    form = {f"field{index}": "v" * 10 for index in range(fields)}
    files = {"upload": ("a.txt", b"x")} if multipart else None
    if multipart:
        form.pop("field0")  # the file is one of the parts
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        response = client.post("/form", data=form, files=files)
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json() == {"fields": len(form), "files": 1 if multipart else 0}
    elif not multipart:
        assert response.headers["x-gateway-backend"] == "gateway"  # refused before Flask ran


@pytest.mark.parametrize(
    ("own", "configured", "fields", "status"),
    [
        (3, None, 3, 200),  # the app's own limit holds for url-encoded forms too...
        (3, None, 4, 413),
        (3000, None, 2000, 200),  # ...and is not lowered to Flask's default by the gateway
        (3000, 5, 6, 413),  # [limits] set: it wins, and becomes the app's own
    ],
)
def test_a_flask_apps_own_form_limit_is_kept_unless_limits_set_one(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    own: int,
    configured: int | None,
    fields: int,
    status: int,
) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[legacy]\napp = "sample_apps:create_form_flask"\n'
        f"[legacy.options]\nmax_form_parts = {own}\n"
        + (f"[limits]\nmax_form_parts = {configured}\n" if configured else "")
    )
    app = create_app(load_settings(config, {}))
    form = {f"f{index}": "v" for index in range(fields)}
    with TestClient(app, base_url="http://localhost") as client:
        response = client.post("/form", data=form)
    assert response.status_code == status, response.text
    flask_app = app.legacy.wsgi_app
    assert flask_app.config["MAX_FORM_PARTS"] == (configured or own)
