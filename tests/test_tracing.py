"""OpenTelemetry tracing in process: the spans a request makes, with the SDK's in-memory exporter.

The apps (``tests/tracing_apps.py``) open a span inside the Flask view and the FastAPI handler;
these tests check that each joins the gateway's trace where it should.
"""

from __future__ import annotations

import builtins
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tracing_apps
from app_config import ADMIN, apps_config
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id
from starlette.testclient import TestClient
from structlog.testing import capture_logs
from support import eventually

from gateway.app import create_app
from gateway.errors import ConfigError
from gateway.log import flush_logs
from gateway.settings import load_settings

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"

CONFIG = (
    apps_config(
        "tracing_apps",
        services={"svc": "create_service", "native": "create_service"},
        service_options={"native": "{ native_telemetry = true }"},
    )
    + """
[[auth.policies]]
path = "/private"
methods = ["GET"]
access = "authenticated"

[flags]
store = "memory"

[[routes]]
path = "/new"
methods = ["GET"]
backend = "svc"
flag = { name = "to-new", mode = "new" }

[[routes]]
path = "/shadowed"
methods = ["GET"]
backend = "native"
flag = { name = "shadowed", mode = "shadow" }
[routes.shadow]
noise_sample_rate = 0.0

[[routes]]
path = "/failing"
methods = ["GET"]
backend = "svc"
fallback = true
"""
)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def spans() -> Iterator[list[ReadableSpan]]:
    tracing_apps.EXPORTER.clear()
    finished: list[ReadableSpan] = []
    yield finished
    tracing_apps.EXPORTER.clear()


def client_for(config: Path, environ: dict[str, str], **options: Any) -> TestClient:
    app = create_app(load_settings(config, environ), **options)
    return TestClient(app, base_url="http://localhost")


@pytest.fixture
def traced(config: Path) -> Iterator[TestClient]:
    environ = {"GATEWAY_TRACING__ENABLED": "true", "OTEL_TRACES_EXPORTER": "none"}
    with client_for(config, environ, tracer_provider=tracing_apps.PROVIDER) as client:
        yield client


def finished() -> dict[str, ReadableSpan]:
    """The spans exported so far, by name (each name once per test); a span that neither the
    gateway nor the test apps made is named after its instrumentation: ``fastapi: GET /new``."""
    by_name: dict[str, ReadableSpan] = {}
    for span in tracing_apps.EXPORTER.get_finished_spans():
        scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
        name = span.name if scope in ("flask-fastapi-gateway", "tests") else f"{scope}: {span.name}"
        assert name not in by_name, f"two spans named {name!r}"
        by_name[name] = span
    return by_name


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def ancestors(span: ReadableSpan) -> list[int]:
    by_id = {span_id(s): s for s in tracing_apps.EXPORTER.get_finished_spans()}
    found = []
    parent = parent_of(span)
    while parent is not None:
        found.append(parent)
        parent = parent_of(by_id[parent]) if parent in by_id else None
    return found


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def trace_of(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.trace_id


def test_a_client_traceparent_is_continued_with_a_child_span_per_stage(
    traced: TestClient, spans: list[ReadableSpan]
) -> None:
    response = traced.get("/new", headers={"traceparent": TRACEPARENT, **ADMIN})
    assert response.status_code == 200
    found = finished()
    assert set(found) == {"GET /new", "auth", "flag decision", "svc", "fastapi handler"}
    server = found["GET /new"]
    assert server.kind == SpanKind.SERVER
    assert format_trace_id(trace_of(server)) == CLIENT_TRACE
    assert server.parent is not None
    assert server.parent.is_remote
    assert format_span_id(server.parent.span_id) == CLIENT_SPAN
    for name in ("auth", "flag decision", "svc"):
        assert parent_of(found[name]) == span_id(server), name
    # The span the FastAPI handler opened is a child of the gateway's backend call.
    assert parent_of(found["fastapi handler"]) == span_id(found["svc"])
    assert {span.context.trace_id for span in found.values() if span.context} == {
        int(CLIENT_TRACE, 16)
    }
    assert dict(server.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/new",
        "url.scheme": "http",
        "http.route": "/new",
        "http.response.status_code": 200,
        "gateway.backend": "svc",
        "gateway.auth.method": "api-key",
        "gateway.flag": "to-new",
        "gateway.decision": "new",
        "gateway.reason": "default",
    }
    assert dict(found["auth"].attributes or {}) == {"gateway.auth.method": "api-key"}
    assert dict(found["flag decision"].attributes or {}) == {
        "gateway.flag": "to-new",
        "gateway.decision": "new",
        "gateway.reason": "default",
    }
    assert dict(found["svc"].attributes or {}) == {
        "gateway.backend": "svc",
        "http.response.status_code": 200,
    }


def test_a_span_opened_in_a_flask_view_is_a_child_of_the_gateway_span(
    traced: TestClient, spans: list[ReadableSpan]
) -> None:
    assert traced.get("/legacy", headers={"traceparent": TRACEPARENT}).status_code == 200
    found = finished()
    assert set(found) == {"GET /legacy", "auth", "legacy", "flask view"}
    server, call, view = found["GET /legacy"], found["legacy"], found["flask view"]
    assert parent_of(call) == span_id(server)
    assert parent_of(view) == span_id(call)
    assert trace_of(view) == int(CLIENT_TRACE, 16)
    # Not a configured route: the catch-all, labelled with the Flask rule it hit.
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/legacy"
    assert server.attributes["gateway.backend"] == "legacy"


def test_flask_instrumentation_spans_join_the_trace(
    config: Path, spans: list[ReadableSpan]
) -> None:
    pytest.importorskip("opentelemetry.instrumentation.flask")
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    environ = {"GATEWAY_TRACING__ENABLED": "true", "OTEL_TRACES_EXPORTER": "none"}
    with client_for(config, environ, tracer_provider=tracing_apps.PROVIDER) as client:
        flask_app = client.app.legacy.wsgi_app  # type: ignore[attr-defined]
        FlaskInstrumentor().instrument_app(flask_app, tracer_provider=tracing_apps.PROVIDER)
        try:
            assert client.get("/legacy", headers={"traceparent": TRACEPARENT}).status_code == 200
        finally:
            FlaskInstrumentor().uninstrument_app(flask_app)
    found = finished()
    instrumented = found["opentelemetry.instrumentation.flask: GET /legacy"]
    assert parent_of(instrumented) == span_id(found["legacy"])
    assert parent_of(found["flask view"]) == span_id(instrumented)


def test_fastapi_native_telemetry_continues_from_the_backend_span(
    traced: TestClient, spans: list[ReadableSpan]
) -> None:
    # The shadowed route's primary is legacy; its candidate, the native service, gets a copy.
    response = traced.get("/shadowed", headers={"traceparent": TRACEPARENT})
    assert response.json() == {"side": "legacy"}
    eventually(lambda: "fastapi handler" in finished() or None)
    found = finished()
    server, copy = found["GET /shadowed"], found["shadow native"]
    # The copy runs in a task started inside the server span: a child, that may end after it.
    assert parent_of(copy) == span_id(server)
    assert parent_of(found["legacy"]) == span_id(server)
    assert dict(copy.attributes or {}) == {
        "gateway.backend": "native",
        "http.response.status_code": 200,
    }
    assert server.attributes is not None
    assert server.attributes["gateway.shadow"] == "native"
    # FastAPI's own server span read the traceparent the gateway wrote for the copy.
    native = found["fastapi: GET /shadowed"]
    assert native.kind == SpanKind.SERVER
    assert parent_of(native) == span_id(copy)
    # FastAPI's operation spans (endpoint, serialization) sit between it and the handler's.
    assert span_id(native) in ancestors(found["fastapi handler"])


def test_a_fallback_replay_is_its_own_span(traced: TestClient, spans: list[ReadableSpan]) -> None:
    response = traced.get("/failing")
    assert response.json() == {"side": "legacy"}
    found = finished()
    server = found["GET /failing"]
    assert parent_of(found["svc"]) == span_id(server)
    assert parent_of(found["fallback legacy"]) == span_id(server)
    assert dict(found["svc"].attributes or {})["http.response.status_code"] == 503
    assert dict(found["fallback legacy"].attributes or {}) == {
        "gateway.backend": "legacy",
        "gateway.fallback": "status-503",
        "http.response.status_code": 200,
    }
    assert parent_of(found["flask view"]) == span_id(found["fallback legacy"])
    assert server.attributes is not None
    assert server.attributes["gateway.fallback"] == "status-503"


@pytest.mark.parametrize(
    "traceparent",
    [None, "garbage", "00-00000000000000000000000000000000-b7ad6b7169203331-01", "zz-" + "1" * 60],
)
def test_without_a_valid_traceparent_a_new_trace_starts(
    traced: TestClient, spans: list[ReadableSpan], traceparent: str | None
) -> None:
    headers = {} if traceparent is None else {"traceparent": traceparent}
    with capture_logs() as logs:
        assert traced.get("/new", headers=headers).status_code == 200
    server = finished()["GET /new"]
    assert server.parent is None
    assert trace_of(server) not in (0, int(CLIENT_TRACE, 16))
    (line,) = [log for log in logs if log["event"] == "request"]
    assert line["trace_id"] == format_trace_id(trace_of(server))


def test_the_trace_id_is_on_the_access_line(traced: TestClient, spans: list[ReadableSpan]) -> None:
    with capture_logs() as logs:
        traced.get("/new", headers={"traceparent": TRACEPARENT})
    (line,) = [log for log in logs if log["event"] == "request"]
    assert line["trace_id"] == CLIENT_TRACE
    # Right after the fields every line has, before the optional ones.
    keys = list(line)
    assert keys[keys.index("auth") + 1 : keys.index("auth") + 3] == ["trace_id", "flag"]


def test_a_refused_request_has_its_server_span(
    traced: TestClient, spans: list[ReadableSpan]
) -> None:
    response = traced.get("/private", headers={"traceparent": TRACEPARENT, "X-API-Key": "x"})
    assert response.status_code == 401
    (server,) = [s for s in finished().values() if s.kind == SpanKind.SERVER]
    attributes = dict(server.attributes or {})
    assert attributes["http.response.status_code"] == 401
    assert attributes["gateway.denied"] == "authentication required"
    assert attributes["gateway.backend"] == "gateway"
    # The refused credential appears nowhere.
    assert not any(
        value == "x" for span in finished().values() for value in (span.attributes or {}).values()
    )


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"OTEL_TRACES_EXPORTER": "none"},
        {"GATEWAY_TRACING__ENABLED": "false", "OTEL_TRACES_EXPORTER": "console"},
        {"GATEWAY_TRACING__ENABLED": "true", "OTEL_SDK_DISABLED": "true"},
    ],
)
def test_tracing_off_makes_no_spans_and_no_trace_id(
    config: Path, spans: list[ReadableSpan], environ: dict[str, str]
) -> None:
    with (
        client_for(config, environ, tracer_provider=tracing_apps.PROVIDER) as client,
        capture_logs() as logs,
    ):
        assert client.get("/new", headers={"traceparent": TRACEPARENT}).status_code == 200
        assert client.get("/legacy").status_code == 200
    # The views' own spans are still made (the apps use the provider directly), as roots.
    assert {span.name for span in tracing_apps.EXPORTER.get_finished_spans()} == {
        "fastapi handler",
        "flask view",
    }
    assert all(s.parent is None for s in tracing_apps.EXPORTER.get_finished_spans())
    assert not any("trace_id" in log for log in logs)


@pytest.fixture
def no_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the ``otel`` extra were not installed: importing ``gateway.tracing`` fails."""
    monkeypatch.delitem(sys.modules, "gateway.tracing", raising=False)
    real_import = builtins.__import__

    def guarded(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("opentelemetry.sdk"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)


@pytest.mark.usefixtures("no_opentelemetry")
def test_without_the_extra_an_exporter_in_the_environment_only_warns(config: Path) -> None:
    stream = io.StringIO()
    environ = {"OTEL_TRACES_EXPORTER": "console", "GATEWAY_LOGGING__FORMAT": "json"}
    app = create_app(load_settings(config, environ), log_stream=stream)
    assert app.tracing is None
    flush_logs()
    (warning,) = [
        line
        for line in map(json.loads, stream.getvalue().splitlines())
        if line["event"] == "tracing.unavailable"
    ]
    assert "pip install 'flask-fastapi-gateway[otel]'" in warning["problem"]
    with TestClient(app, base_url="http://localhost") as client, capture_logs() as logs:
        assert client.get("/new").json() == {"side": "new"}
    assert not any("trace_id" in log for log in logs)


@pytest.mark.usefixtures("no_opentelemetry")
def test_without_the_extra_enabled_true_is_a_config_error(config: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app(load_settings(config, {"GATEWAY_TRACING__ENABLED": "true"}))
    assert f"{config}: tracing.enabled: needs the otel extra" in str(caught.value)


def test_an_unknown_exporter_is_a_config_error(config: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        create_app(load_settings(config, {"OTEL_TRACES_EXPORTER": "nonesuch"}))
    assert "tracing.exporters: no trace exporter 'nonesuch' is installed" in str(caught.value)


@pytest.mark.parametrize(
    ("environ", "enabled", "exporters"),
    [
        ({}, False, ()),
        ({"OTEL_TRACES_EXPORTER": "console"}, "auto", ("console",)),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, "auto", ("otlp_proto_http", "console")),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "auto",
            ("otlp_proto_grpc",),
        ),
        ({"OTEL_TRACES_EXPORTER": "none"}, False, ()),
        ({"GATEWAY_TRACING__ENABLED": "true"}, True, ("otlp_proto_http",)),
        ({"GATEWAY_TRACING__EXPORTERS": '["console"]'}, "auto", ("console",)),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "TRUE"}, False, ()),
    ],
)
def test_when_tracing_is_on(
    config: Path, environ: dict[str, str], enabled: object, exporters: tuple[str, ...]
) -> None:
    tracing = load_settings(config, environ).tracing
    assert (tracing.enabled, tracing.exporters) == (enabled, exporters)
