"""OpenTelemetry tracing (the ``otel`` extra): one server span per request, a child per stage.

The only module that imports ``opentelemetry``; ``gateway.build`` imports it only when tracing
is on, so with tracing off no request calls into OpenTelemetry. When on:

- ``TracingMiddleware`` (just inside the request context) continues the client's
  ``traceparent`` (any propagator ``OTEL_PROPAGATORS`` names; a missing or malformed one starts
  a new trace), opens the request's ``SERVER`` span and makes it current, puts the trace id on
  the request's facts (the access line) and in the logging context, and at the end names the
  span ``"{method} {route}"`` with the route, backend, flag decision and identity method;
- ``StageSpans`` gives the auth and flag-decision stages their child spans;
- ``TracedBackend`` wraps each backend: every call (the primary, a fallback replay to legacy, a
  shadow copy) is a child span, current while the backend runs, and its context replaces the
  propagation headers the backend receives. So spans that Flask or FastAPI code opens, by hand
  or through ``opentelemetry-instrumentation-flask`` or FastAPI's own telemetry (which reads
  ``traceparent`` from the request), join the same trace: the legacy adapter runs each WSGI
  call in a copy of the current context, which carries the span into the Flask thread.

A shadow copy runs after the client has its answer, in a task started inside the server span:
its span is a *child* of the request's server span (it may end after it)::

    tracing = Tracing(exporters=("console",))
    handler = TracingMiddleware(dispatcher, tracing=tracing)
    legacy_call = TracedBackend(legacy_app, "legacy", tracing=tracing)
    async with tracing:           # the SDK from OTEL_* (unless a provider is set), flushed at exit
        ...
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from importlib.metadata import entry_points
from typing import ParamSpec, TypeVar

import structlog
from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_trace_id
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.context import Identity, RequestFacts, request_facts
from gateway.flags.model import FlagDecision

P = ParamSpec("P")
T = TypeVar("T")

#: Where exporter packages register their span exporters (as the SDK's configurator finds them).
EXPORTER_GROUP = "opentelemetry_traces_exporter"
SERVICE_NAME = "flask-fastapi-gateway"

log = structlog.get_logger("gateway.tracing")

Headers = Sequence[tuple[bytes, bytes]]


class _ScopeHeaders(Getter[Headers]):
    """Reads propagation headers from an ASGI scope's raw header list (names are lower case)."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        name = key.lower().encode("latin-1")
        values = [value.decode("latin-1") for header, value in carrier if header == name]
        if len(values) > 1 and name == b"baggage":
            return [",".join(values)]  # the baggage propagator reads the first value only
        return values or None

    def keys(self, carrier: Headers) -> list[str]:
        return [header.decode("latin-1") for header, _ in carrier]


_GETTER = _ScopeHeaders()


def exporter_installed(name: str) -> bool:
    return bool(entry_points(group=EXPORTER_GROUP, name=name))


def create_provider(exporters: Iterable[str]) -> SDKTracerProvider:
    """An SDK provider configured as the SDK configures itself from ``OTEL_*``: the sampler
    (``OTEL_TRACES_SAMPLER[_ARG]``) and span limits are read by ``TracerProvider``, the resource
    (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``) by ``Resource.create``, the batching
    (``OTEL_BSP_*``) by ``BatchSpanProcessor``, endpoints and headers by each exporter. Our own
    code: the exporter lookup by entry point (the SDK's is private,
    ``opentelemetry.sdk._configuration._import_exporters``) and the default service name."""
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    provider = SDKTracerProvider(resource=resource)
    for name in exporters:
        (entry_point,) = entry_points(group=EXPORTER_GROUP, name=name)
        exporter: SpanExporter = entry_point.load()()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class Tracing:
    """The tracer every span comes from, and the provider's lifetime (an async context manager).

    With ``provider``, spans go there (tests pass one with an in-memory exporter). Without it,
    the global provider: at start-up, if nobody set one (``opentelemetry-instrument`` does), the
    gateway builds one from ``OTEL_*`` and makes it global, so Flask, FastAPI and application
    code trace into it too; at shut-down it flushes and stops the one it built.
    """

    def __init__(
        self, *, exporters: Sequence[str] = (), provider: trace.TracerProvider | None = None
    ) -> None:
        self._exporters = tuple(exporters)
        self._given = provider
        self._owned: SDKTracerProvider | None = None
        # Without a provider, a proxy tracer: it follows the global provider once one is set.
        self.tracer = trace.get_tracer(SERVICE_NAME, tracer_provider=provider)
        self.stages = StageSpans(self.tracer)

    def traced(self, app: ASGIApp, name: str) -> TracedBackend:
        return TracedBackend(app, name, tracing=self)

    async def __aenter__(self) -> Tracing:
        unset = isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        if self._given is None and unset:
            self._owned = create_provider(self._exporters)
            trace.set_tracer_provider(self._owned)
            log.info("tracing.started", exporters=list(self._exporters))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        owned, self._owned = self._owned, None
        if owned is not None:
            # Exports what is still batched: a blocking call, off the event loop.
            await asyncio.to_thread(owned.shutdown)


class StageSpans:
    """The child spans of the stages that are not a backend call: on ``RequestFacts.spans``."""

    __slots__ = ("_tracer",)

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    async def auth(self, authenticating: Awaitable[tuple[Identity, T]]) -> tuple[Identity, T]:
        """``auth``: identifying the caller (``gateway.auth.method``; never a credential)."""
        with self._tracer.start_as_current_span("auth") as span:
            identity, invalid = await authenticating
            span.set_attribute("gateway.auth.method", identity.method)
            return identity, invalid

    def flag_decision(self, evaluate: Callable[P, FlagDecision]) -> Callable[P, FlagDecision]:
        """``evaluate`` with a ``flag decision`` span around it."""

        def traced(*args: P.args, **kwargs: P.kwargs) -> FlagDecision:
            with self._tracer.start_as_current_span("flag decision") as span:
                decision = evaluate(*args, **kwargs)
                span.set_attributes(_decision_attributes(decision))
                return decision

        return traced


def _decision_attributes(decision: FlagDecision) -> dict[str, str]:
    return {
        "gateway.flag": decision.flag,
        "gateway.decision": decision.side,
        "gateway.reason": decision.reason,
    }


class TracingMiddleware:
    """The request's ``SERVER`` span; runs just inside ``RequestContextMiddleware``."""

    def __init__(self, app: ASGIApp, *, tracing: Tracing) -> None:
        self.app = app
        self._tracer = tracing.tracer
        self._stages = tracing.stages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        facts = request_facts(scope)
        parent = propagate.extract(scope["headers"], getter=_GETTER)
        span = self._tracer.start_span(
            facts.method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": facts.method,
                "url.path": facts.path,  # the canonical path: never the query string
                "url.scheme": scope.get("scheme", "http"),
            },
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        facts.trace_id = trace_id = format_trace_id(span.get_span_context().trace_id)
        facts.spans = self._stages
        bound = structlog.contextvars.bind_contextvars(trace_id=trace_id)
        try:
            # No send wrapper of its own: the request-context middleware, outside this one,
            # records the status the client gets in the facts.
            await _call_in_span(span, self.app, scope, receive, send)
        finally:
            structlog.contextvars.reset_contextvars(**bound)
            context.detach(token)
            if span.is_recording():
                _describe_request(span, facts, facts.status)
            span.end()


def _describe_request(span: trace.Span, facts: RequestFacts, status: int | None) -> None:
    route = facts.route
    span.update_name(f"{facts.method} {route}" if route else facts.method)
    attributes: dict[str, str | int] = {
        "gateway.backend": facts.backend,
        "gateway.auth.method": facts.identity.method,
    }
    if route:
        attributes["http.route"] = route
    if facts.decision is not None:
        attributes.update(_decision_attributes(facts.decision))
    for name in ("rejected", "denied", "shadow", "breaker", "failure", "fallback"):
        value = getattr(facts, name)
        if value is not None:
            attributes[f"gateway.{name}"] = value
    if status is not None:
        attributes["http.response.status_code"] = status
        if status >= 500:  # HTTP semantic conventions: only 5xx is an error on a server span
            span.set_status(StatusCode.ERROR)
            attributes.setdefault("error.type", str(status))
    span.set_attributes(attributes)


class _Status:
    """Forwards a response, noting its status."""

    __slots__ = ("_send", "code")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.code: int | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.code = message["status"]
        await self._send(message)


async def _call_in_span(
    span: trace.Span, app: ASGIApp, scope: Scope, receive: Receive, send: Send
) -> None:
    """``app``, with what escapes it (an error, a cancellation) recorded on ``span``."""
    try:
        await app(scope, receive, send)
    except BaseException as exc:
        if isinstance(exc, Exception):
            span.record_exception(exc)
        span.set_attribute("error.type", type(exc).__qualname__)
        span.set_status(StatusCode.ERROR, type(exc).__qualname__)
        raise


class TracedBackend:
    """One backend, each call in a child span: ``legacy``, ``fallback legacy`` (a replay after
    the new side failed), ``breaker legacy`` (an open breaker), ``shadow <name>`` (a copy)."""

    def __init__(self, app: ASGIApp, name: str, *, tracing: Tracing) -> None:
        self.app = app
        self.name = name
        self._tracer = tracing.tracer
        #: The headers the propagators (``OTEL_PROPAGATORS``) write: replaced on each call.
        self._fields = frozenset(f.encode("latin-1") for f in propagate.get_global_textmap().fields)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        facts = request_facts(scope)
        attributes: dict[str, str] = {"gateway.backend": self.name}
        if facts.shadow == "candidate":
            role = "shadow"
        elif facts.fallback is not None:
            role = "fallback"
            attributes["gateway.fallback"] = facts.fallback
        elif facts.breaker == "open":
            role = "breaker"
        else:
            role = ""
        name = f"{role} {self.name}" if role else self.name
        span = self._tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attributes)
        token = context.attach(trace.set_span_in_context(span))
        # The backend continues from this span, not from what the client sent.
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        scope["headers"] = [
            *(header for header in scope["headers"] if header[0] not in self._fields),
            *((key.encode("latin-1"), value.encode("latin-1")) for key, value in carrier.items()),
        ]
        status = _Status(send)
        try:
            await _call_in_span(span, self.app, scope, receive, status)
        finally:
            context.detach(token)
            if status.code is not None:
                span.set_attribute("http.response.status_code", status.code)
                if status.code >= 500:
                    span.set_status(StatusCode.ERROR)
            span.end()
