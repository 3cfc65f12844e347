"""End to end: ``gateway serve`` with tracing configured the way a user would, by ``OTEL_*``.

``OTEL_TRACES_EXPORTER=console`` makes the SDK print each span as JSON on stdout (the log file
here); the legacy Flask app is instrumented with ``opentelemetry-instrumentation-flask``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import GatewayProcess

pytest.importorskip("opentelemetry.instrumentation.flask")

pytestmark = pytest.mark.e2e

TESTS = Path(__file__).parent
CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"

CONFIG = """
[legacy]
app = "tracing_apps:create_legacy"
options = { instrument = true }
[services.svc]
app = "tracing_apps:create_service"

[flags]
store = "memory"

[[routes]]
path = "/new"
methods = ["GET"]
backend = "svc"
"""


def json_objects(text: str) -> list[dict[str, Any]]:
    """Every JSON object in ``text`` that starts a line: the log lines, and the console
    exporter's spans (indented over several lines)."""
    decoder = json.JSONDecoder()
    objects, position = [], 0
    while (start := text.find("{", position)) != -1:
        if start and text[start - 1] != "\n":
            position = start + 1
            continue
        try:
            value, position = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            position = start + 1
            continue
        objects.append(value)
    return objects


@pytest.fixture
def served(tmp_path: Path) -> Iterator[GatewayProcess]:
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG)
    env = {
        "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "bookstore-gateway",
    }
    with GatewayProcess(config, env=env) as process:
        yield process


def test_gateway_and_flask_spans_share_the_client_trace(
    served: GatewayProcess,
) -> None:
    process = served
    response = httpx.get(
        f"{process.base_url}/legacy",
        headers={"traceparent": TRACEPARENT, "X-Request-ID": "e2e-traced"},
    )
    assert response.json() == {"side": "legacy"}
    assert process.stop() == 0  # SIGTERM: the lifespan's end exports what is still batched
    objects = json_objects(process.log_text())

    spans = [o for o in objects if "context" in o and "kind" in o]
    by_id = {span["context"]["span_id"]: span for span in spans}
    (server,) = [s for s in spans if s["kind"] == "SpanKind.SERVER" and s["name"] == "GET /legacy"]
    assert server["attributes"]["gateway.backend"] == "legacy"
    assert server["parent_id"] == "0x00f067aa0ba902b7"
    assert server["resource"]["attributes"]["service.name"] == "bookstore-gateway"
    (view,) = [s for s in spans if s["name"] == "flask view"]
    chain = [view]
    while chain[-1]["parent_id"] in by_id:
        chain.append(by_id[chain[-1]["parent_id"]])
    # The view's span, under the Flask instrumentation's, under the gateway's backend call,
    # under the gateway's server span, which continues the client's trace.
    assert [span["name"] for span in chain] == [
        "flask view",
        "GET /legacy",
        "legacy",
        "GET /legacy",
    ]
    assert chain[-1] is server
    assert {span["context"]["trace_id"] for span in chain} == {f"0x{CLIENT_TRACE}"}
    # The gateway's own FastAPI endpoints (the readiness probe) are traced the same way: FastAPI's
    # span continues from the gateway's, in one trace.
    probe = [s for s in spans if s["attributes"].get("gateway.backend") == "gateway"][-1]
    in_trace = [s for s in spans if s["context"]["trace_id"] == probe["context"]["trace_id"]]
    assert {s["name"] for s in in_trace} >= {"GET /_gateway/ready", "gateway", "fastapi.endpoint"}

    lines = [o for o in objects if o.get("request_id") == "e2e-traced"]
    access = next(line for line in lines if line["event"] == "request")
    assert access["trace_id"] == CLIENT_TRACE
    # A line the Flask view logged, in its worker thread, carries the trace id too.
    view_line = next(line for line in lines if line["event"] == "legacy.view")
    assert view_line["trace_id"] == CLIENT_TRACE
