"""Apps for the tracing tests (``tests/test_tracing.py``, ``tests/test_e2e_tracing.py``).

Each side opens a span of its own inside its handler, so a test can check that it joins the
gateway's trace. In process, spans go to ``PROVIDER`` (an in-memory exporter); in a real
``gateway serve`` (``create_legacy(instrument=True)``), to the global provider the gateway set
up from ``OTEL_*``, with ``opentelemetry-instrumentation-flask`` tracing every Flask request.
"""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Response
from flask import Flask
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))


def _tracer(global_provider: bool) -> trace.Tracer:
    return trace.get_tracer("tests", tracer_provider=None if global_provider else PROVIDER)


def create_legacy(instrument: bool = False) -> Flask:
    app = Flask("tracing_legacy")
    tracer = _tracer(instrument)
    if instrument:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor().instrument_app(app)

    @app.get("/legacy")
    @app.get("/shadowed")
    @app.get("/failing")
    def view() -> dict[str, str]:
        structlog.get_logger("tracing_apps").info("legacy.view")
        with tracer.start_as_current_span("flask view"):
            return {"side": "legacy"}

    return app


def create_service(native_telemetry: bool = False) -> FastAPI:
    # FastAPI's own telemetry (FastAPI >= 0.16x) opens a server span from the request's
    # traceparent header: the one the gateway's backend span wrote.
    options = {"telemetry": {"tracer_provider": PROVIDER}} if native_telemetry else {}
    app = FastAPI(**options)  # type: ignore[arg-type]
    tracer = _tracer(False)

    @app.get("/new")
    @app.get("/shadowed")
    async def handler() -> dict[str, str]:
        with tracer.start_as_current_span("fastapi handler"):
            return {"side": "new"}

    @app.get("/failing")
    async def failing() -> Response:
        return Response(status_code=503)

    return app
