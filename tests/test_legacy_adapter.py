"""The legacy adapter against small raw WSGI apps: the WSGI contract, streaming, limits."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from structlog.testing import capture_logs
from support import call, cut_upload, http_scope

from gateway.adapters.legacy import LegacyApp, send_batch
from gateway.adapters.wsgi_response import BODY, END, START
from gateway.context import FACTS_KEY, RequestFacts
from gateway.middleware.request_context import RequestContextMiddleware

pytestmark = pytest.mark.anyio

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def hello_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]


def body_echo_app(environ: Environ, start_response: StartResponse) -> list[bytes]:
    data = environ["wsgi.input"].read()
    digest = hashlib.sha256(data).hexdigest().encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(len(data)).encode(), b" ", digest]


async def test_small_response_arrives_whole() -> None:
    legacy = LegacyApp(hello_app, threads=2)
    exchange = await call(legacy, http_scope("/"))
    assert exchange.status == 200
    assert exchange.headers[b"content-type"] == b"text/plain"
    assert exchange.body == b"hello"
    assert exchange.complete
    # Usually one body message (the chunk and the end together, below); two when the loop
    # happened to run between the thread's chunk and its end, which a busy machine can cause.
    assert len(exchange.body_messages) <= 2


async def test_a_batch_sends_its_last_chunk_with_the_end() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-type", b"text/plain")]
    await send_batch(send, [(START, 200, headers), (BODY, b"he"), (BODY, b"llo"), (END,)])
    await send_batch(send, [(START, 204, []), (END,)])
    assert sent == [
        {"type": "http.response.start", "status": 200, "headers": headers},
        {"type": "http.response.body", "body": b"he", "more_body": True},
        {"type": "http.response.body", "body": b"llo", "more_body": False},
        {"type": "http.response.start", "status": 204, "headers": []},
        {"type": "http.response.body", "body": b"", "more_body": False},
    ]


async def test_serves_without_a_lifespan_and_inside_one() -> None:
    legacy = LegacyApp(hello_app, threads=1, queue_timeout=5)
    assert (await call(legacy, http_scope("/"))).body == b"hello"  # no lifespan: as in tests
    async with legacy:
        # One thread for three requests: two wait for it, on the loop the lifespan ran on.
        exchanges = await asyncio.gather(*(call(legacy, http_scope("/")) for _ in range(3)))
    assert [exchange.body for exchange in exchanges] == [b"hello"] * 3
    assert legacy.busy_threads == 0


async def test_the_lifespan_sets_the_switch_interval_and_restores_it() -> None:
    before = sys.getswitchinterval()
    legacy = LegacyApp(hello_app, threads=1, switch_interval=0.0005)
    async with legacy:
        assert sys.getswitchinterval() == pytest.approx(0.0005)
        assert (await call(legacy, http_scope("/"))).body == b"hello"
    assert sys.getswitchinterval() == before


async def test_without_a_switch_interval_the_interpreters_stays() -> None:
    before = sys.getswitchinterval()
    async with LegacyApp(hello_app, threads=1):
        assert sys.getswitchinterval() == before


async def test_environ_carries_scope_and_path() -> None:
    seen: Environ = {}

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        seen.update(environ)
        start_response("204 No Content", [])
        return []

    scope = http_scope("/caf\u00e9/x")
    exchange = await call(LegacyApp(app, threads=1), scope)
    assert exchange.status == 204
    assert seen["asgi.scope"] is scope
    # PEP 3333: PATH_INFO is the UTF-8 bytes as latin-1 text.
    assert seen["PATH_INFO"] == "/caf\u00e9/x".encode().decode("latin-1")
    assert seen["wsgi.input_terminated"] is True


@pytest.mark.parametrize("size", [0, 10, 64 * 1024, 64 * 1024 + 1, 1_000_000])
async def test_request_body_with_content_length(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    chunks = [data[i : i + 16384] for i in range(0, len(data), 16384)] or [b""]
    scope = http_scope("/", "POST", [(b"content-length", str(size).encode())])
    exchange = await call(LegacyApp(body_echo_app, threads=1), scope, chunks)
    assert exchange.body == f"{size} {hashlib.sha256(data).hexdigest()}".encode()


async def test_chunked_request_body_reaches_the_app() -> None:
    # a2wsgi alone gives Werkzeug an empty body here (no Content-Length, no input_terminated).
    from flask import Flask, request

    flask_app = Flask("chunked")

    @flask_app.post("/upload")
    def upload() -> dict[str, object]:
        data = request.get_data()
        return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    payload = b"abc" * 100_000
    chunks = [payload[i : i + 7000] for i in range(0, len(payload), 7000)]
    scope = http_scope("/upload", "POST", [(b"transfer-encoding", b"chunked")])
    exchange = await call(LegacyApp(flask_app, threads=1), scope, chunks)
    assert exchange.status == 200
    assert exchange.body == (
        b'{"sha256":"' + hashlib.sha256(payload).hexdigest().encode() + b'","size":300000}\n'
    )


async def test_streamed_response_reaches_the_client_while_the_app_still_runs() -> None:
    client_has: dict[int, threading.Event] = {index: threading.Event() for index in range(4)}
    waited: list[bool] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/csv")])
        for index in range(4):
            yield f"row {index}\n".encode()
            # Produce the next row only once the client holds this one. An adapter that
            # buffered the response would never deliver it, and this wait would time out.
            waited.append(client_has[index].wait(5))

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    bodies: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message["body"])
            if message["body"]:
                client_has[len([b for b in bodies if b]) - 1].set()

    await LegacyApp(app, threads=1)(http_scope("/"), receive, send)
    assert waited == [True, True, True, True]
    # Each WSGI chunk stays one message: the app's boundaries survive.
    assert bodies == [b"row 0\n", b"row 1\n", b"row 2\n", b"row 3\n", b""]


async def test_write_callable_and_iterable_both_reach_the_client() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        write = start_response("200 OK", [])
        write(b"from write, ")
        return [b"from iterable"]

    exchange = await call(LegacyApp(app, threads=1), http_scope("/"))
    assert exchange.body == b"from write, from iterable"


async def test_close_is_called_after_iteration() -> None:
    closed = threading.Event()

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"a"
            yield b"b"

        def close(self) -> None:
            closed.set()

    def app(environ: Environ, start_response: StartResponse) -> Body:
        start_response("200 OK", [])
        return Body()

    exchange = await call(LegacyApp(app, threads=1), http_scope("/"))
    assert exchange.body == b"ab"
    assert closed.wait(2)


async def test_exc_info_replaces_headers_before_the_body() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response("200 OK", [("X-First", "yes")])
        try:
            raise ValueError("late failure")
        except ValueError:
            import sys

            start_response("500 Internal Server Error", [("X-Second", "yes")], sys.exc_info())
        return [b"error page"]

    exchange = await call(LegacyApp(app, threads=1), http_scope("/"))
    assert exchange.status == 500
    assert b"x-first" not in exchange.headers
    assert exchange.headers[b"x-second"] == b"yes"
    assert exchange.body == b"error page"


async def test_exc_info_after_the_body_started_reraises() -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"partial"
        try:
            raise ValueError("too late")
        except ValueError:
            import sys

            start_response("500 Internal Server Error", [], sys.exc_info())
        yield b"never"

    with pytest.raises(ValueError, match="too late"):
        await call(LegacyApp(app, threads=1), http_scope("/"))


async def test_exception_before_response_propagates_to_the_gateway() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        raise RuntimeError("broken handler")

    with pytest.raises(RuntimeError, match="broken handler"):
        await call(LegacyApp(app, threads=1), http_scope("/"))


async def test_app_that_never_starts_a_response_is_an_error() -> None:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        return [b"no headers"]

    with pytest.raises(RuntimeError, match="before calling start_response"):
        await call(LegacyApp(app, threads=1), http_scope("/"))


async def test_headers_with_underscores_never_reach_the_app() -> None:
    seen: Environ = {}

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        seen.update(environ)
        start_response("200 OK", [])
        return []

    headers = [(b"x-user_id", b"admin"), (b"x-trace-id", b"t1")]
    await call(LegacyApp(app, threads=1), http_scope("/", headers=headers))
    assert "HTTP_X_USER_ID" not in seen
    assert seen["HTTP_X_TRACE_ID"] == "t1"


async def test_disconnect_stops_the_stream_and_frees_the_thread() -> None:
    produced: list[int] = []
    closed = threading.Event()

    def endless() -> Iterator[bytes]:
        try:
            for index in range(1000):
                produced.append(index)
                yield b"x" * 100
                time.sleep(0.02)
        finally:
            closed.set()

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        return endless()

    legacy = LegacyApp(app, threads=1)
    exchange = await call(legacy, http_scope("/"), disconnect_after=0.2)
    assert not exchange.complete
    assert await asyncio.to_thread(closed.wait, 2)
    assert len(produced) < 100
    # The only thread is free again: the next request is served at once.
    legacy.wsgi_app = hello_app
    assert (await call(legacy, http_scope("/"))).body == b"hello"


async def test_back_pressure_keeps_the_thread_close_to_the_client() -> None:
    produced: list[int] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [])
        for index in range(100):
            produced.append(index)
            yield b"y" * 64 * 1024

    legacy = LegacyApp(app, threads=1, max_pending_bytes=128 * 1024)
    delivered = 0
    ahead: list[int] = []

    async def slow_send(message: dict[str, Any]) -> None:
        nonlocal delivered
        if message["type"] != "http.response.body":
            return
        delivered += len(message["body"]) // (64 * 1024)
        await asyncio.sleep(0.05)  # a slow client
        ahead.append(len(produced) - delivered)

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    await legacy(http_scope("/"), receive, slow_send)
    assert len(produced) == 100
    assert delivered == 100
    # At most 128 KiB (two chunks) pending plus the one the thread holds: never further ahead.
    assert max(ahead) <= 3


async def test_saturated_pool_answers_503_with_retry_after() -> None:
    release = threading.Event()

    def stuck(environ: Environ, start_response: StartResponse) -> list[bytes]:
        release.wait(5)
        start_response("200 OK", [])
        return [b"done"]

    legacy = LegacyApp(stuck, threads=1, queue_timeout=0.2)
    first = asyncio.create_task(call(legacy, http_scope("/")))
    await asyncio.sleep(0.05)
    refused = await call(legacy, http_scope("/"))
    assert refused.status == 503
    assert refused.headers[b"retry-after"] == b"5"
    assert b"busy" in refused.body
    release.set()
    assert (await first).body == b"done"
    assert legacy.busy_threads == 0


async def test_waiting_request_gets_the_thread_when_it_frees_up() -> None:
    release = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        if environ["PATH_INFO"] == "/slow":
            release.wait(5)
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    legacy = LegacyApp(app, threads=1, queue_timeout=5)
    slow = asyncio.create_task(call(legacy, http_scope("/slow")))
    await asyncio.sleep(0.05)
    queued = asyncio.create_task(call(legacy, http_scope("/queued")))
    await asyncio.sleep(0.1)
    assert not queued.done()
    release.set()
    assert (await slow).body == b"/slow"
    assert (await queued).body == b"/queued"
    assert legacy.busy_threads == 0


async def test_cookies_sent_as_separate_headers_all_reach_flask() -> None:
    from flask import Flask, request

    flask_app = Flask("cookies")

    @flask_app.get("/")
    def cookies() -> dict[str, str]:
        return dict(request.cookies)

    headers = [(b"cookie", b"a=1"), (b"cookie", b"session=xyz"), (b"accept", b"*/*")]
    exchange = await call(LegacyApp(flask_app, threads=1), http_scope("/", headers=headers))
    assert exchange.body == b'{"a":"1","session":"xyz"}\n'


@pytest.mark.parametrize(
    ("declared", "buffer_limit"), [(100, 64 * 1024), (100, 10)], ids=["buffered", "streamed"]
)
async def test_an_upload_cut_by_a_disconnect_never_reaches_flask_as_whole(
    declared: int, buffer_limit: int
) -> None:
    seen: list[int] = []
    failures: list[str] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        try:
            seen.append(len(environ["wsgi.input"].read()))
        except Exception as exc:  # Werkzeug's ClientDisconnected, in a real Flask app
            failures.append(type(exc).__name__)
            raise
        start_response("200 OK", [])
        return [b"stored"]

    receive, send, sent = cut_upload(b"x" * 40)
    legacy = LegacyApp(app, threads=1, buffer_body_limit=buffer_limit)
    scope = http_scope("/upload", "POST", [(b"content-length", str(declared).encode())])
    facts = RequestFacts(request_id="cut", path="/upload", method="POST")
    scope[FACTS_KEY] = facts
    outcome = "returned"
    with capture_logs() as logs:
        try:
            await asyncio.wait_for(legacy(scope, receive, send), 5)
        except Exception as exc:  # the app's own error, as a server would see it
            outcome = type(exc).__name__
    # Said once, and on the access line: whatever the app answered, nobody received it.
    assert [e["event"] for e in logs].count("legacy.client_disconnected") == 1
    assert facts.log_fields()["disconnected"] is True
    assert seen == []  # the 40 of 100 bytes were never handed over as a whole body
    if buffer_limit < declared:  # streamed: the app's read fails as Werkzeug's error
        assert failures == ["ClientDisconnected"]
        assert outcome == "ClientDisconnected"
    else:  # buffered: the app never runs
        assert (failures, outcome) == ([], "returned")
    assert not any(m.get("body") == b"stored" for m in sent)
    assert legacy.busy_threads == 0  # the thread (or its slot) is free again


def answer_with(status: str, headers: list[tuple[str, str]], *chunks: bytes) -> Any:
    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        start_response(status, headers)
        return list(chunks)

    return app


async def test_a_status_without_a_reason_phrase_is_fine() -> None:
    exchange = await call(LegacyApp(answer_with("201", [], b"made"), threads=1), http_scope("/"))
    assert (exchange.status, exchange.body) == (201, b"made")


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        ("2OO OK", []),
        ("200OK", []),
        ("", []),
        ("200 OK", [("X-Split", "a\r\nSet-Cookie: session=forged")]),
        ("200 OK", [("X-Nul", "a\x00b")]),
        ("200 OK", [("Bad Name", "x")]),
    ],
)
async def test_a_bad_status_or_header_is_the_apps_error_and_a_json_500(
    status: str, headers: list[tuple[str, str]]
) -> None:
    """Not a response the server would refuse once started (a dropped connection)."""
    app = RequestContextMiddleware(LegacyApp(answer_with(status, headers, b"x"), threads=1))
    with capture_logs() as logs:
        exchange = await call(app, http_scope("/"))
    assert exchange.status == 500
    assert json.loads(exchange.body)["error"]["message"] == "internal server error"
    assert b"forged" not in b"".join(v for _, v in exchange.headers.items())
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["request.failed"]


async def test_a_body_longer_than_its_content_length_is_cut_and_logged() -> None:
    legacy = LegacyApp(
        answer_with("200 OK", [("Content-Length", "5")], b"hel", b"lo, and more", b"!"),
        threads=1,
    )
    with capture_logs() as logs:
        exchange = await call(legacy, http_scope("/"))
    assert exchange.body == b"hello"
    assert [e["event"] for e in logs].count("legacy.body_longer_than_content_length") == 1


def reading_app(how: Callable[[Any], Any]) -> Any:
    """Answers with ``repr`` of what ``how(environ["wsgi.input"])`` returns."""

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        result = how(environ["wsgi.input"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [repr(result).encode()]

    return app


def read_loop(stream: Any) -> list[list[bytes]]:
    batches = []
    while lines := stream.readlines(8):
        batches.append(lines)
    return batches


READERS: dict[str, Callable[[Any], Any]] = {
    "readlines()": lambda f: f.readlines(),
    "readlines(hint)": lambda f: f.readlines(5),
    "readlines loop": read_loop,
    "iteration": lambda f: list(f),
    "readline(limit)": lambda f: [f.readline(4), f.readline(4), f.readline()],
    "readline to the end": lambda f: [f.readline() for _ in range(5)],
    "read(n)": lambda f: [f.read(3), f.read(100), f.read(1)],
}
BODIES = [b"", b"one", b"one\n", b"one\ntwo", b"one\ntwo\n\nfour\n", b"\n\n", b"a" * 20 + b"\nb"]


@pytest.mark.parametrize("body", BODIES, ids=repr)
@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("streamed", [False, True], ids=["buffered", "streamed"])
async def test_wsgi_input_reads_like_a_file(body: bytes, reader: str, streamed: bool) -> None:
    """Whether the body was buffered (small) or streams in (large or chunked, here in 2-byte
    pieces), every reading method returns what ``io.BytesIO`` returns for the same bytes."""
    how = READERS[reader]
    expected = repr(how(io.BytesIO(body))).encode()
    legacy = LegacyApp(reading_app(how), threads=1, buffer_body_limit=-1 if streamed else 1 << 20)
    pieces = [body[i : i + 2] for i in range(0, len(body), 2)] or [b""]
    headers = [(b"content-length", str(len(body)).encode())]
    exchange = await call(legacy, http_scope("/", "POST", headers), body=pieces)
    assert exchange.body == expected


async def test_a_queued_request_gets_its_full_request_timeout_once_a_thread_takes_it() -> None:
    release = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        if environ["PATH_INFO"] == "/first":
            release.wait(5)
        else:
            time.sleep(0.3)
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    # The second request queues 0.3 s, then runs 0.3 s: 0.6 s in all, but only 0.3 s of the
    # 0.5 s request timeout, which counts from its thread's start.
    legacy = LegacyApp(app, threads=1, queue_timeout=2, request_timeout=0.5)
    async with legacy:
        first = asyncio.create_task(call(legacy, http_scope("/first")))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(call(legacy, http_scope("/second")))
        await asyncio.sleep(0.3)
        release.set()
        assert (await first).body == b"/first"
        answer = await second
    assert (answer.status, answer.body) == (200, b"/second")
    assert legacy.admission_waits == 1
    assert legacy.admission_rejections == 0


async def test_each_request_times_out_on_its_own_deadline_and_the_quick_ones_are_answered() -> None:
    """One timer serves every request's ``request_timeout``: a stuck request started later
    gets its 504 on its own deadline, not on the first one's, and requests that answer in
    time are untouched."""
    release = threading.Event()

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        if environ["PATH_INFO"].startswith("/stuck"):
            release.wait(5)
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    loop = asyncio.get_running_loop()
    legacy = LegacyApp(app, threads=4, request_timeout=0.3)

    async def timed(path: str) -> tuple[int, bytes, float]:
        started = loop.time()
        answer = await call(legacy, http_scope(path))
        return answer.status, answer.body, loop.time() - started

    try:
        async with legacy:
            first = asyncio.create_task(timed("/stuck-1"))
            await asyncio.sleep(0.15)
            second = asyncio.create_task(timed("/stuck-2"))
            quick = [await timed(f"/quick-{n}") for n in range(3)]
            first_status, _, first_took = await first
            assert not second.done()  # its own deadline is 0.15 s later
            second_status, _, second_took = await second
    finally:
        release.set()

    assert [(status, body) for status, body, _ in quick] == [
        (200, b"/quick-0"),
        (200, b"/quick-1"),
        (200, b"/quick-2"),
    ]
    assert (first_status, second_status) == (504, 504)
    assert first_took >= 0.3 - 0.001
    assert second_took >= 0.3 - 0.001


async def test_a_queued_request_that_never_gets_a_thread_is_withdrawn_and_never_runs() -> None:
    release = threading.Event()
    ran: list[str] = []

    def app(environ: Environ, start_response: StartResponse) -> list[bytes]:
        ran.append(environ["PATH_INFO"])
        release.wait(5)
        start_response("200 OK", [])
        return [b"late"]

    legacy = LegacyApp(app, threads=1, queue_timeout=0.1, request_timeout=5)
    async with legacy:
        first = asyncio.create_task(call(legacy, http_scope("/first")))
        await asyncio.sleep(0.05)
        refused = await call(legacy, http_scope("/refused"))
        release.set()
        await first
        # The thread is free again and serves the next request, not the withdrawn one.
        assert (await call(legacy, http_scope("/next"))).body == b"late"
    assert refused.status == 503
    assert ran == ["/first", "/next"]
    assert (legacy.admission_waits, legacy.admission_rejections) == (1, 1)
