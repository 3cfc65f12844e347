"""The legacy app in worker processes (``[legacy] isolation = "processes"``): the adapter's
contract as on threads, and what only processes can do (kill a stuck view, survive a crash).

Each test starts one or two worker processes (about a second each: they import Flask and the
app), so related checks share a test.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import (
    GatewayProcess,
    call,
    cut_upload,
    demo_config,
    http_scope,
    through_gateway,
)

from gateway.adapters.legacy_processes import ProcessLegacyApp
from gateway.build import build_legacy
from gateway.context import FACTS_KEY, Identity, RequestFacts
from gateway.middleware.request_context import RequestContextMiddleware
from gateway.settings import LegacySettings, Settings

pytestmark = pytest.mark.anyio


def adapter(**legacy: Any) -> ProcessLegacyApp:
    """The adapter ``build_legacy`` makes for ``process_apps:create_app`` in processes."""
    settings = Settings(
        legacy=LegacySettings(app="process_apps:create_app", isolation="processes", **legacy)
    )
    built = build_legacy(settings)[1]
    assert isinstance(built, ProcessLegacyApp)
    return built


@pytest.fixture
async def one_worker() -> AsyncIterator[ProcessLegacyApp]:
    async with adapter(processes=1, request_timeout=1.0, queue_timeout=0.3) as legacy:
        yield legacy


def get(path: str) -> dict[str, Any]:
    path, _, query = path.partition("?")
    return {**http_scope(path), "query_string": query.encode()}


def pid_of(body: bytes) -> int:
    return int(json.loads(body)["pid"])


async def test_requests_bodies_and_streams_cross_to_the_worker(
    one_worker: ProcessLegacyApp,
) -> None:
    hello = await call(one_worker, get("/hello"))
    assert hello.status == 200
    assert hello.headers[b"content-type"] == b"application/json"
    assert pid_of(hello.body) == one_worker.worker_pids[0]
    # Below the gateway's priority by `[legacy] nice` (default 10): the event loop runs first.
    assert json.loads(hello.body)["nice"] == min(19, os.nice(0) + 10)
    assert json.loads(hello.body)["scheduler"] == os.SCHED_OTHER
    # A response with a Content-Length crosses whole: one body message, the end included.
    assert hello.complete
    assert len(hello.body_messages) == 1

    for size, chunked in ((10, False), (64 * 1024 + 1, False), (300_000, True)):
        payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        chunks = [payload[i : i + 7000] for i in range(0, len(payload), 7000)]
        header = (
            (b"transfer-encoding", b"chunked") if chunked else (b"content-length", b"%d" % size)
        )
        upload = await call(one_worker, http_scope("/upload", "POST", [header]), chunks)
        assert upload.status == 200, upload.body
        assert json.loads(upload.body) == {
            "size": size,
            "sha256": hashlib.sha256(payload).hexdigest(),
        }

    stream = await call(one_worker, get("/stream?count=40"))
    assert stream.body == b"".join(f"line {n}\n".encode() for n in range(40))
    assert stream.complete
    assert len(stream.body_messages) > 1  # chunk by chunk, not gathered
    assert one_worker.busy_threads == 0


async def test_flask_sees_the_gateways_identity_and_request_id(
    one_worker: ProcessLegacyApp,
) -> None:
    alice = Identity(subject="alice", roles=frozenset({"admin"}), method="session")
    exchange = await call(through_gateway(one_worker, alice, "req-proc-1"), get("/me"))
    assert json.loads(exchange.body) == {
        "subject": "alice",
        "roles": ["admin"],
        "request_id": "req-proc-1",
    }


async def test_an_exception_in_the_worker_is_a_json_500_with_the_request_id(
    one_worker: ProcessLegacyApp,
) -> None:
    app = RequestContextMiddleware(one_worker, access_log=False)
    scope = get("/boom")
    scope["headers"] = [(b"x-request-id", b"req-boom")]
    exchange = await call(app, scope)
    assert exchange.status == 500
    assert json.loads(exchange.body)["request_id"] == "req-boom"
    # The worker is free again.
    assert (await call(one_worker, get("/hello"))).status == 200


async def test_a_worker_that_dies_answers_502_and_is_replaced(
    one_worker: ProcessLegacyApp,
) -> None:
    [first] = one_worker.worker_pids
    app = RequestContextMiddleware(one_worker, access_log=False)
    scope = get("/crash")
    scope["headers"] = [(b"x-request-id", b"req-crash")]
    crashed = await call(app, scope)
    assert crashed.status == 502
    assert json.loads(crashed.body) == {
        "error": {"status": 502, "message": "the legacy application's worker process died"},
        "request_id": "req-crash",
    }
    # The next request waits for the replacement (queue_timeout permitting) or is refused;
    # once it is up, requests are served by the new process.
    hello = await _until_served(one_worker)
    assert pid_of(hello.body) not in (first, None)


async def test_a_worker_killed_while_idle_is_replaced_before_the_next_request(
    one_worker: ProcessLegacyApp,
) -> None:
    [first] = one_worker.worker_pids
    assert first is not None
    os.kill(first, signal.SIGKILL)
    # The gateway learns of the exit from its child watcher; the next request then waits for
    # a new worker instead of getting a 502.
    async with asyncio.timeout(10):
        while one_worker.worker_exit_statuses != [-signal.SIGKILL]:
            await asyncio.sleep(0.02)
    hello = await call(one_worker, get("/hello"))
    assert hello.status == 200
    assert pid_of(hello.body) != first


async def test_a_stuck_view_gets_504_and_its_worker_is_killed_and_replaced(
    one_worker: ProcessLegacyApp,
) -> None:
    [first] = one_worker.worker_pids
    started = asyncio.get_running_loop().time()
    stuck = await call(one_worker, get("/sleep?seconds=30"))
    assert stuck.status == 504
    assert b"did not answer in time" in stuck.body
    assert asyncio.get_running_loop().time() - started < 10
    hello = await _until_served(one_worker)
    assert pid_of(hello.body) != first


async def test_a_busy_pool_answers_503_with_retry_after(one_worker: ProcessLegacyApp) -> None:
    slow = asyncio.create_task(call(one_worker, get("/sleep?seconds=0.8")))
    await asyncio.sleep(0.1)
    refused = await call(one_worker, get("/hello"))
    assert refused.status == 503
    assert refused.headers[b"retry-after"] == b"5"
    assert (await slow).status == 200
    assert one_worker.admission_rejections == 1


async def test_a_client_that_leaves_stops_the_stream_and_close_runs(
    one_worker: ProcessLegacyApp, tmp_path: Path
) -> None:
    marker = tmp_path / "closed"
    exchange = await call(one_worker, get(f"/forever?marker={marker}"), disconnect_after=0.2)
    assert exchange.status == 200
    assert not exchange.complete
    assert marker.read_text() == "closed"  # the worker ran the iterable's close()
    # The same worker serves the next request.
    assert (await call(one_worker, get("/hello"))).status == 200


async def test_back_pressure_keeps_the_worker_close_to_a_slow_client(
    one_worker: ProcessLegacyApp, tmp_path: Path
) -> None:
    counter = tmp_path / "produced"
    delivered = 0
    ahead: list[int] = []

    async def slow_send(message: dict[str, Any]) -> None:
        nonlocal delivered
        if message["type"] != "http.response.body":
            return
        delivered += len(message["body"])
        await asyncio.sleep(0.01)  # a slow client
        produced = int(counter.read_text() or "0") if counter.exists() else 0
        ahead.append(produced - delivered // (64 * 1024))

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    await one_worker(get(f"/firehose?counter={counter}"), receive, slow_send)
    assert delivered == 100 * 64 * 1024
    # The worker blocks once the socket and the gateway's read buffer are full: a few hundred
    # KiB ahead of the client, never the whole 6.4 MB.
    assert max(ahead) <= 20


async def test_an_upload_cut_by_a_disconnect_never_reaches_flask_as_whole() -> None:
    receive, send, sent = cut_upload(b"x" * 40)
    scope = http_scope("/upload", "POST", [(b"content-length", b"100")])
    facts = RequestFacts(request_id="cut", path="/upload", method="POST")
    scope[FACTS_KEY] = facts
    # A body larger than buffer_body_limit streams: the worker pulls it chunk by chunk.
    async with adapter(processes=1, buffer_body_limit=10) as legacy:
        await legacy(scope, receive, send)
        # Werkzeug's ClientDisconnected in the worker: Flask answers 400, never "stored".
        assert sent[0]["status"] == 400
        assert facts.log_fields()["disconnected"] is True
        assert legacy.busy_threads == 0
        assert (await call(legacy, get("/hello"))).status == 200


async def test_idle_scheduling_runs_the_workers_only_when_the_cores_are_free() -> None:
    async with adapter(processes=1, scheduling="idle") as legacy:
        hello = json.loads((await call(legacy, get("/hello"))).body)
        assert hello["scheduler"] == os.SCHED_IDLE
        # Niceness means nothing to SCHED_IDLE: the workers keep the gateway's.
        assert hello["nice"] == os.nice(0)


async def test_without_its_lifespan_the_adapter_refuses_to_serve() -> None:
    with pytest.raises(RuntimeError, match="inside its lifespan"):
        await call(adapter(processes=1), get("/hello"))


async def _until_served(legacy: ProcessLegacyApp) -> Any:
    for _ in range(200):
        exchange = await call(legacy, get("/hello"))
        if exchange.status == 200:
            return exchange
        assert exchange.status == 503
    raise AssertionError("the replacement worker never served")


def test_the_demo_serves_login_and_api_me_from_worker_processes(tmp_path: Path) -> None:
    flags = {"catalog-books": {"mode": "legacy"}, "accounts-me": {"mode": "legacy"}}
    config = demo_config(tmp_path, flags=flags)
    # The demo's `threads = 16` stays: with processes it is not used.
    text = config.read_text().replace(
        "[legacy]\n", '[legacy]\nisolation = "processes"\nscheduling = "idle"\n', 1
    )
    config.write_text(text)
    with (
        GatewayProcess(config) as gateway,
        httpx.Client(base_url=gateway.base_url, timeout=10) as client,
    ):
        started = [e for e in gateway.log_events() if e["event"] == "legacy.workers_started"]
        assert [os.sched_getscheduler(pid) for pid in started[0]["pids"]] == [os.SCHED_IDLE] * 2
        login = client.post(
            "/login",
            data={"username": "bob", "password": "builder"},
            headers={"X-Request-ID": "e2e-proc-login"},
        )
        assert login.status_code == 200, login.text
        me = client.get("/api/me")
        assert me.headers["x-gateway-backend"] == "legacy"
        assert me.json()["username"] == "bob"
        assert me.json()["roles"] == ["user"]
    # The worker's own log lines (the Flask handler's) carry the request id, on the same stream.
    events = [event["event"] for event in gateway.events_for("e2e-proc-login")]
    assert "auth.logged_in" in events
    started = [e for e in gateway.log_events() if e["event"] == "legacy.workers_started"]
    assert len(started) == 1
    assert len(started[0]["pids"]) == 2
