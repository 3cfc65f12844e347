"""What the gateway does where a2wsgi's own tests are deselected (``INTENDED_DIFFERENCES`` in
``a2wsgi_shim.py``).

Each deselected upstream test is replayed here with the gateway's counterpart, asserting the
gateway's behaviour instead, so the only thing dropped is the line that pins a2wsgi's choice.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import io
import sys
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest
from a2wsgi.wsgi import Body, build_environ
from a2wsgi_shim import INTENDED_DIFFERENCES, VENDORED_A2WSGI_TESTS, GatewayWSGIMiddleware

from gateway.adapters.legacy import StreamedBody, build_wsgi_environ

#: The body of upstream's ``test_body``.
UPSTREAM_BODY = b"""This is a body test.
Why do this?
To prevent memory leaks.
And cancel pre-reading.
Newline.0
Newline.1
Newline.2
Newline.3
"""

#: The scope of upstream's ``test_build_environ``.
UPSTREAM_SCOPE: dict[str, Any] = {
    "type": "http",
    "http_version": "1.1",
    "method": "GET",
    "scheme": "https",
    "path": "/中文",
    "query_string": b"a=123&b=456",
    "headers": [
        (b"host", b"www.example.org"),
        (b"content-type", b"application/json"),
        (b"content-length", b"18"),
        (b"accept", b"application/json"),
        (b"accept", b"text/plain"),
    ],
    "client": ("134.56.78.4", 1453),
    "server": ("www.example.org", 443),
}


def test_every_intended_difference_names_an_upstream_test() -> None:
    tree = ast.parse(VENDORED_A2WSGI_TESTS.read_text(encoding="utf8"))
    upstream = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }
    assert set(INTENDED_DIFFERENCES) <= upstream
    # Most of the suite still runs: a difference is an exception, not the rule.
    assert len(upstream - set(INTENDED_DIFFERENCES)) >= 3


# -- test_body: the streamed wsgi.input reads as a file does ---------------------------------------


@pytest.fixture
def loop_in_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop on its own thread, as in upstream's test_body (which never stops it)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


def _receive_in(chunks: list[bytes]) -> Any:
    async def receive() -> dict[str, Any]:
        body = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    return receive


def _upstream_test_body_calls(stream: Any) -> list[Any]:
    """Every call upstream's test_body makes, in order, with what each returned."""
    results: list[Any] = [
        stream.readline(),
        stream.read(4),
        stream.readline(2),
        stream.readline(20),
        stream.readlines(2),
    ]
    iterated = []
    for index, line in enumerate(stream):
        iterated.append(line)
        if index == 1:
            break
    results += [iterated, stream.readlines(), stream.readlines(), stream.readline(), stream.read()]
    results.append(list(stream))
    return results


@pytest.mark.parametrize("chunk_size", [len(UPSTREAM_BODY), 7, 1])
def test_body_calls_answer_as_io_bytesio(
    loop_in_thread: asyncio.AbstractEventLoop, chunk_size: int
) -> None:
    chunks = [UPSTREAM_BODY[i : i + chunk_size] for i in range(0, len(UPSTREAM_BODY), chunk_size)]
    streamed = _upstream_test_body_calls(StreamedBody(loop_in_thread, _receive_in(chunks)))
    assert streamed == _upstream_test_body_calls(io.BytesIO(UPSTREAM_BODY))
    # Upstream's assertion is a2wsgi's answer; a file's (and the gateway's) is one line here.
    assert streamed[4] == [b"To prevent memory leaks.\n"]
    a2wsgi = _upstream_test_body_calls(Body(loop_in_thread, _receive_in([UPSTREAM_BODY])))
    assert a2wsgi[4] == [b"To prevent memory leaks.\n", b"And cancel pre-reading.\n"]


# -- test_wsgi_exc_info: the app's own error response, nothing raised ------------------------------


def _load_upstream() -> ModuleType:
    """The vendored module under a name of its own, for its WSGI apps."""
    spec = importlib.util.spec_from_file_location("a2wsgi_upstream_tests", VENDORED_A2WSGI_TESTS)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.anyio
async def test_exc_info_before_the_body_sends_the_apps_response() -> None:
    app = GatewayWSGIMiddleware(_load_upstream().return_exc_info)
    transport = httpx.ASGITransport(app=app)  # raise_app_exceptions=True: nothing is raised
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/")
    assert response.status_code == 500
    assert response.text == "Internal Server Error"


# -- test_build_environ(_with_env): the same environ but for two keys ------------------------------


@pytest.fixture
def receive_nothing() -> Any:
    async def receive() -> dict[str, Any]:
        raise NotImplementedError

    return receive


@pytest.mark.parametrize("script_name", [None, "/urlprefix"])
@pytest.mark.anyio
async def test_environ_differs_from_a2wsgi_only_in_two_keys(
    monkeypatch: pytest.MonkeyPatch, receive_nothing: Any, script_name: str | None
) -> None:
    if script_name is None:
        monkeypatch.delenv("SCRIPT_NAME", raising=False)
    else:
        monkeypatch.setenv("SCRIPT_NAME", script_name)
    body = Body(asyncio.get_running_loop(), receive_nothing)
    ours = build_wsgi_environ(UPSTREAM_SCOPE, body)
    theirs = dict(build_environ(UPSTREAM_SCOPE, body))

    assert ours["wsgi.errors"] is sys.stderr
    assert theirs["wsgi.errors"] is sys.stdout
    assert ours["wsgi.input_terminated"] is True
    for environ in (ours, theirs):
        del environ["wsgi.errors"]
    del ours["wsgi.input_terminated"]
    assert ours == theirs
    # Kept from a2wsgi: SCRIPT_NAME from the process environment (an app behind a proxy that
    # strips a path prefix), PATH_INFO unchanged.
    assert ours["SCRIPT_NAME"] == (script_name or "")
    assert ours["PATH_INFO"] == "/中文".encode().decode("latin-1")
