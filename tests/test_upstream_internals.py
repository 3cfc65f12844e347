"""The private parts of uvicorn and a2wsgi the gateway builds on are still there, as used.

pyproject.toml bounds both libraries to the releases these were checked against; when a new
release is allowed, this file is what fails first and says what moved.
"""

from __future__ import annotations

import inspect
import re

import httptools
import uvicorn
from a2wsgi.wsgi import Body, build_environ
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


def test_uvicorn_httptools_protocol_has_what_gateway_http_protocol_overrides() -> None:
    for name in (
        "data_received",
        "on_header",
        "on_headers_complete",
        "on_message_begin",
        "on_message_complete",
        "on_response_complete",
        "handle_websocket_upgrade",
        "send_400_response",
        "_should_upgrade",
        "_unset_keepalive_if_required",
        "_unsupported_upgrade_warning",
    ):
        assert callable(getattr(HttpToolsProtocol, name, None)), name
    # The per-request state the subclass reads, set in __init__ / on_message_begin.
    source = inspect.getsource(HttpToolsProtocol)
    for attribute in ("self.parser", "self.url", "self.headers", "self.cycle", "self.scope"):
        assert attribute in source, attribute
    # on_headers_complete hands the same list object to the scope (why trailers are dropped).
    assert '"headers": self.headers' in inspect.getsource(HttpToolsProtocol.on_message_begin)
    assert STATUS_LINE[431].startswith(b"HTTP/1.1 431")
    assert issubclass(httptools.HttpParserUpgrade, Exception)


def test_uvicorn_server_still_re_raises_captured_signals() -> None:
    """gateway.draining clears SIGTERM from this list so a drained stop exits 0."""
    source = inspect.getsource(uvicorn.Server.capture_signals)
    assert "self._captured_signals" in source
    assert "raise_signal" in source
    server = uvicorn.Server(uvicorn.Config(app=None))
    assert server._captured_signals == []


def test_a2wsgi_body_and_build_environ_keep_their_shape() -> None:
    assert callable(getattr(Body, "_receive_more_data", None))
    parameters = list(inspect.signature(Body.__init__).parameters)
    assert parameters[:3] == ["self", "loop", "receive"]
    assert list(inspect.signature(build_environ).parameters) == ["scope", "body"]


def test_uvicorn_request_cycle_keeps_the_framing_state_http_1_0_bodies_use() -> None:
    """gateway.http_protocol frames an HTTP/1.0 body by closing, through these attributes."""
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    source = inspect.getsource(RequestResponseCycle)
    for attribute in ("self.chunked_encoding", "self.expected_content_length", "self.keep_alive"):
        assert attribute in source, attribute
    assert "def eof_received" in inspect.getsource(HttpToolsProtocol)


def test_fastapi_offline_ships_the_swagger_ui_files_gateway_openapi_docs_serves() -> None:
    """gateway.openapi.docs serves Swagger UI's files by their path inside fastapi-offline."""
    from gateway.openapi.docs import ASSETS, VENDORED

    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"):
        path, _ = ASSETS[name]
        assert path.parent == VENDORED
        assert path.is_file(), path
    bundle = ASSETS["swagger-ui-bundle.js"][0].read_text(encoding="utf-8")
    # Swagger UI 5 (the first to render OpenAPI 3.1), defining the global init.js calls.
    assert "SwaggerUIBundle" in bundle
    assert re.search(r'PACKAGE_VERSION:"5\.\d+\.\d+"', bundle)


def test_prometheus_histogram_keeps_per_bucket_values_that_observe_adds_to() -> None:
    """gateway.metrics.recorder adds a worker's bucket counts with ``_buckets[i].inc(n)`` and
    ``_sum.inc(s)``: the same values ``observe()`` increments, non-cumulative per bucket."""
    from prometheus_client import CollectorRegistry, Histogram

    histogram = Histogram("h", "h", ("a",), buckets=(1.0, 2.0), registry=CollectorRegistry())
    child = histogram.labels("x")
    assert len(child._buckets) == 3  # the bounds and +Inf
    child._buckets[1].inc(2)
    child._sum.inc(3.0)
    child.observe(1.5)
    samples = {(s.name, s.labels.get("le")): s.value for s in histogram.collect()[0].samples}
    assert samples[("h_bucket", "1.0")] == 0
    assert samples[("h_bucket", "2.0")] == 3
    assert samples[("h_bucket", "+Inf")] == 3
    assert samples[("h_count", None)] == 3
    assert samples[("h_sum", None)] == 4.5


def test_uvicorn_multiprocess_supervisor_has_what_the_worker_supervisor_overrides() -> None:
    """gateway.metrics.multiproc.WorkerSupervisor marks replaced workers dead around these."""
    from uvicorn.supervisors import Multiprocess

    for name in ("keep_subprocess_alive", "restart_all"):
        assert callable(getattr(Multiprocess, name, None)), name
    assert "self.processes" in inspect.getsource(Multiprocess.keep_subprocess_alive)
    # The connection protocol reads the lifespan state (gateway.http_protocol's refusals).
    assert "app_state" in inspect.signature(HttpToolsProtocol.__init__).parameters


def test_uvicorn_supervisors_keep_what_gateway_reload_control_overrides() -> None:
    """SIGHUP: ForwardingMultiprocess replaces Multiprocess.handle_hup (called by name from
    handle_signals) and reads its processes; ConfigWatchingReload extends
    WatchFilesReload.startup and signals its current process. Worker processes get the app
    factory object itself (import_from_string passes a non-string through)."""
    from uvicorn.importer import import_from_string
    from uvicorn.supervisors import Multiprocess
    from uvicorn.supervisors.basereload import BaseReload
    from uvicorn.supervisors.watchfilesreload import WatchFilesReload

    assert callable(getattr(Multiprocess, "handle_hup", None))
    assert 'getattr(self, f"handle_{sig_name.lower()}"' in inspect.getsource(
        Multiprocess.handle_signals
    )
    assert "self.processes" in inspect.getsource(Multiprocess.__init__)
    assert "self.process = " in inspect.getsource(BaseReload.startup)
    assert issubclass(WatchFilesReload, BaseReload)
    marker = object()
    assert import_from_string(marker) is marker


def test_uvicorn_supervisor_stops_when_a_worker_fails_to_start() -> None:
    """gateway.supervisor: a worker that cannot build the app exits with STARTUP_FAILURE (so does
    one whose lifespan fails), and uvicorn's supervisor then stops every worker rather than
    restart it, keeping the failed process (and its exit code) in ``processes``."""
    from uvicorn.supervisors import Multiprocess

    source = inspect.getsource(Multiprocess.keep_subprocess_alive)
    assert "process.exitcode == STARTUP_FAILURE" in source
    assert "self.should_exit.set()" in source
