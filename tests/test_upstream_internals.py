"""The private parts of uvicorn and a2wsgi the gateway builds on are still there, as used.

pyproject.toml bounds both libraries to the releases these were checked against; when a new
release is allowed, this file is what fails first and says what moved.
"""

from __future__ import annotations

import inspect

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
