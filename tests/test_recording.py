"""Recording samples: redaction, bounded bodies, a writer that never blocks, a hook (in the
dispatcher) that never changes the client's response, and ``[routes.record]`` on the demo, in
process."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send
from support import call, demo_config, http_scope, through_gateway

from gateway.app import create_app
from gateway.context import FACTS_KEY, Identity, RequestFacts
from gateway.dispatch import Dispatcher
from gateway.flags.model import Recording
from gateway.flags.runtime import FlagRuntime
from gateway.flags.stores import FlagStore
from gateway.recording.hook import RecordedRoute, RecordingHook
from gateway.recording.redact import REDACTED, Redactor
from gateway.recording.samples import RecordedIdentity, read_samples
from gateway.recording.writer import Exchange, SampleWriter, count_samples
from gateway.route_plan import RoutePlan
from gateway.routes import RouteTable
from gateway.settings import RecordRouteSettings, load_settings
from gateway.storage.memory import MemoryStorage

pytestmark = pytest.mark.anyio

ALICE = Identity("alice", frozenset({"admin"}), "session")


# -- redaction ------------------------------------------------------------------------------------


def test_credential_headers_are_dropped_and_secret_looking_ones_masked() -> None:
    redactor = Redactor(api_key_header="X-Reporting-Key")

    kept = redactor.request_headers(
        [
            (b"cookie", b"session=abc"),
            (b"authorization", b"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.sig"),
            (b"x-reporting-key", b"demo-reporting-key-not-a-secret"),
            (b"x-csrf-token", b"t0k3n"),
            (b"accept", b"application/json"),
        ]
    )
    answered = redactor.response_headers([(b"set-cookie", b"session=new"), (b"etag", b'"1"')])

    assert kept == (("x-csrf-token", REDACTED), ("accept", "application/json"))
    assert answered == (("etag", '"1"'),)


def test_json_fields_that_look_secret_are_masked_at_any_depth() -> None:
    body = Redactor().body(
        b'{"username": "alice", "password": "wonderland",'
        b' "nested": {"access_token": "abc", "list": [{"client_secret": 1}]},'
        b' "note": "Bearer abc.def", "count": 2}',
        "application/json",
        limit=1024,
    )

    assert body.encoding == "json"
    assert body.value == {
        "username": "alice",
        "password": REDACTED,
        "nested": {"access_token": REDACTED, "list": [{"client_secret": REDACTED}]},
        "note": REDACTED,
        "count": 2,
    }


def test_form_fields_and_query_parameters_that_look_secret_are_masked() -> None:
    redactor = Redactor()

    form = redactor.body(
        b"username=alice&password=wonderland", "application/x-www-form-urlencoded", limit=1024
    )

    assert form.value == "username=alice&password=%5Bredacted%5D"
    assert redactor.query("q=dune&api_key=k1") == "q=dune&api_key=%5Bredacted%5D"
    assert redactor.query("q=dune&page=2") == "q=dune&page=2"


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b'{"password": "' + b"x" * 100 + b'"}', "application/json"),
        (
            b"--b\r\nContent-Disposition: form-data; name=password\r\n\r\nx\r\n--b--",
            "multipart/form-data; boundary=b",
        ),
    ],
    ids=["longer-than-the-limit", "multipart"],
)
def test_bodies_that_cannot_be_masked_keep_nothing(raw: bytes, content_type: str) -> None:
    body = Redactor().body(raw, content_type, limit=64)

    assert body.truncated is True
    assert body.raw() == b""


# -- the writer -----------------------------------------------------------------------------------


def _exchange(path: Path, *, limit: int = 100, body: bytes = b'{"ok": true}') -> Exchange:
    return Exchange(
        path=path,
        limit=limit,
        route="GET /api/me",
        method="GET",
        target="/api/me",
        query=b"",
        request_headers=[(b"cookie", b"session=abc"), (b"accept", b"*/*")],
        request_body=b"",
        identity=RecordedIdentity("alice", ("admin",), "session"),
        status=200,
        response_headers=[(b"content-type", b"application/json")],
        response_body=body,
        backend="legacy",
        max_body=1024,
    )


async def test_the_writer_writes_redacted_samples_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "samples" / "get-api-me.jsonl"
    writer = SampleWriter(redactor=Redactor())

    async with writer:
        for _ in range(5):
            assert writer.offer(_exchange(path, limit=3))

    samples = read_samples(path)
    assert len(samples) == 3
    assert writer.lines(path) == 3
    assert samples[0].request.headers == (("accept", "*/*"),)
    assert samples[0].request.identity == RecordedIdentity("alice", ("admin",), "session")
    assert samples[0].response.json() == {"ok": True}


async def test_the_limit_counts_samples_other_processes_wrote(tmp_path: Path) -> None:
    path = tmp_path / "get-api-me.jsonl"
    async with SampleWriter(redactor=Redactor()) as writer:
        writer.offer(_exchange(path, limit=10))
    # Another worker appends two lines meanwhile.
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines * 3) + "\n")

    async with SampleWriter(redactor=Redactor()) as writer:
        for _ in range(10):
            writer.offer(_exchange(path, limit=4))

    assert count_samples(path) == 4


async def test_a_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "get-api-me.jsonl"
    writer = SampleWriter(redactor=Redactor(), queue_size=2)
    gate = threading.Event()
    original = writer._write

    def slow_write(exchange: Exchange) -> None:
        gate.wait(10)
        original(exchange)

    writer._write = slow_write  # type: ignore[method-assign]
    async with writer:
        accepted = [writer.offer(_exchange(path)) for _ in range(6)]
        gate.set()

    # One is being written, two wait in the queue: the rest are dropped at once.
    assert accepted.count(False) == writer.dropped >= 3
    assert count_samples(path) == accepted.count(True)


def test_a_stopped_writer_drops(tmp_path: Path) -> None:
    writer = SampleWriter(redactor=Redactor())

    assert writer.offer(_exchange(tmp_path / "x.jsonl")) is False
    assert writer.dropped == 1


# -- the hook -------------------------------------------------------------------------------------


async def _streaming_app(scope: Scope, receive: Receive, send: Send) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    await send(
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [(b"content-type", b"application/json"), (b"set-cookie", b"s=1")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"got": ', "more_body": True})
    await send({"type": "http.response.body", "body": body or b"null", "more_body": True})
    await send({"type": "http.response.body", "body": b"}"})


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """The legacy side: answers what no configured route serves."""
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"legacy"})


def _hooked(
    path: Path,
    writer: SampleWriter,
    *,
    rate: float = 1.0,
    asked: dict[str, Recording] | None = None,
    method: str = "POST",
    template: str = "/things",
) -> ASGIApp:
    """A dispatcher with one configured route (``_streaming_app`` serves it) and the hook, as
    the gateway calls it: with the request's facts, after authentication."""
    label = f"{method} {template}"
    route = RecordedRoute(
        template=template,
        method=method,
        label=label,
        path=path,
        record=None if asked is not None else RecordRouteSettings(sample_rate=rate, max_body=64),
    )
    plan = RoutePlan(
        template=template,
        methods=frozenset({method}),
        backend="things",
        label=label,
        app=_streaming_app,
        service=_streaming_app,
        legacy=_not_found,
    )
    dispatcher = Dispatcher(
        table=RouteTable([plan]),
        legacy_rules=RouteTable([]),
        legacy=_not_found,
        gateway_app=_not_found,
        flags=FlagRuntime(store=FlagStore(MemoryStorage()), defaults={}),
        recording=RecordingHook(routes=[route], writer=writer, recordings=lambda: asked or {}),
    )
    return through_gateway(dispatcher, ALICE)


@pytest.mark.parametrize("queue_size", [256, 1], ids=["recorded", "queue-full"])
async def test_the_hook_never_changes_what_the_client_gets(tmp_path: Path, queue_size: int) -> None:
    path = tmp_path / "post-things.jsonl"
    scope = http_scope("/things", "POST", [(b"content-type", b"application/json")])
    plain = await call(_streaming_app, dict(scope), [b'{"a":', b" 1}"])
    writer = SampleWriter(redactor=Redactor(), queue_size=queue_size)
    app = _hooked(path, writer)

    async with writer:
        exchanges = [await call(app, dict(scope), [b'{"a":', b" 1}"]) for _ in range(5)]

    assert all(exchange.messages == plain.messages for exchange in exchanges)
    samples = read_samples(path)
    assert 1 <= len(samples) <= 5
    assert samples[0].request.body.value == {"a": 1}
    assert samples[0].response.status == 201
    assert samples[0].response.headers == (("content-type", "application/json"),)
    assert samples[0].response.json() == {"got": {"a": 1}}


async def test_the_hook_records_nothing_at_rate_zero_or_for_other_routes(tmp_path: Path) -> None:
    path = tmp_path / "post-things.jsonl"
    writer = SampleWriter(redactor=Redactor())
    async with writer:
        zero = await call(_hooked(path, writer, rate=0.0), http_scope("/things", "POST"), [b"{}"])
        other = await call(_hooked(path, writer), http_scope("/other", "POST"), [b"{}"])
        method = await call(_hooked(path, writer), http_scope("/things", "GET"), [b""])

    assert not path.exists()
    assert [zero.status, other.status, method.status] == [201, 404, 404]


async def test_head_on_a_get_route_is_recorded_as_the_get(tmp_path: Path) -> None:
    path = tmp_path / "get-things.jsonl"
    writer = SampleWriter(redactor=Redactor())
    async with writer:
        hooked = _hooked(path, writer, method="GET")
        answer = await call(hooked, http_scope("/things", "HEAD"), [b""])

    assert answer.status == 201
    [sample] = read_samples(path)
    assert (sample.route, sample.request.method) == ("GET /things", "HEAD")


async def test_a_route_matched_only_with_a_slash_added_is_not_recorded(tmp_path: Path) -> None:
    # The dispatcher hands /things to the service that serves /things/ (which redirects): that
    # answer is not the route's, and the old layer, matching paths itself, never recorded it.
    path = tmp_path / "post-things.jsonl"
    writer = SampleWriter(redactor=Redactor())
    hooked = _hooked(path, writer, template="/things/")
    async with writer:
        respelled = await call(hooked, http_scope("/things", "POST"), [b"{}"])
        assert respelled.status == 201
        await asyncio.sleep(0.05)
        assert not path.exists()
        await call(hooked, http_scope("/things/", "POST"), [b"{}"])

    assert [sample.route for sample in read_samples(path)] == ["POST /things/"]


async def test_websockets_are_not_recorded(tmp_path: Path) -> None:
    path = tmp_path / "get-things.jsonl"
    writer = SampleWriter(redactor=Redactor())
    dispatcher = _hooked(path, writer, method="GET")
    facts = RequestFacts(request_id="req-ws", path="/things", method="GET", identity=ALICE)
    scope = {**http_scope("/things", "GET"), "type": "websocket", FACTS_KEY: facts}
    served: list[str] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        served.append(message["type"])

    async with writer:
        await dispatcher(scope, receive, send)

    assert served  # the route's app was called, without the hook's copies
    assert not path.exists()


async def test_a_recording_asked_for_records_until_the_target(tmp_path: Path) -> None:
    path = tmp_path / "post-things.jsonl"
    asked = {"POST /things": Recording(target=2, until=1e12)}
    expired = {"POST /things": Recording(target=2, until=1.0)}
    writer = SampleWriter(redactor=Redactor())
    async with writer:
        await call(_hooked(path, writer, asked=expired), http_scope("/things", "POST"), [b"{}"])
        assert not path.exists()
        for _ in range(4):
            await call(_hooked(path, writer, asked=asked), http_scope("/things", "POST"), [b"{}"])
            await asyncio.sleep(0)

    assert count_samples(path) == 2


# -- the demo, in process ------------------------------------------------------------------------


def test_the_demo_records_a_route_with_routes_record(tmp_path: Path) -> None:
    config = demo_config(tmp_path, flags={"accounts-me": {"mode": "legacy"}})
    record = "[routes.record]\nsample_rate = 1.0\nmax_samples = 2\n"
    shadow_end = 'compare_headers = ["content-type"]\n'
    config.write_text(config.read_text().replace(shadow_end, shadow_end + record))
    settings = load_settings(config, {})

    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        login = client.post("/login", json={"username": "alice", "password": "wonderland"})
        assert login.status_code == 200
        answers = [client.get("/api/me") for _ in range(3)]

    assert [a.json()["username"] for a in answers] == ["alice"] * 3
    samples = read_samples(tmp_path / "var" / "samples" / "get-api-me.jsonl")
    assert len(samples) == 2
    assert samples[0].route == "GET /api/me"
    assert samples[0].request.identity == RecordedIdentity("alice", ("admin",), "session")
    assert not [name for name, _ in samples[0].request.headers if name == "cookie"]
    assert samples[0].response.json() == answers[0].json()
    assert samples[0].response.backend == "legacy"
