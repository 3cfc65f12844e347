"""The shim that runs a2wsgi's own WSGI tests (``vendor/a2wsgi/test_wsgi.py``, unchanged) against
the gateway's adapter.

Each name the vendored module imports from ``a2wsgi.wsgi`` is rebound, for the length of each test,
to the gateway's counterpart (``SUBSTITUTES``; ``conftest.py`` does the rebinding). The upstream
tests that assert an a2wsgi behaviour the gateway changes on purpose are listed here, once, in
``INTENDED_DIFFERENCES``: they are deselected and named with their reason at the end of the run,
and ``test_a2wsgi_differences.py`` checks what the gateway does instead.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from starlette.types import Receive, Scope, Send

from gateway.adapters.legacy import LegacyApp, StreamedBody, WSGIApp, build_wsgi_environ

HERE = Path(__file__).resolve().parent
VENDORED_A2WSGI_TESTS = HERE / "vendor" / "a2wsgi" / "test_wsgi.py"

#: a2wsgi 1.10.10 tests that assert a behaviour the gateway changes on purpose: name -> why.
INTENDED_DIFFERENCES: dict[str, str] = {
    "test_body": (
        "asserts readlines(2) returns two lines (a2wsgi counts the hint in lines); the gateway's "
        "streamed wsgi.input counts it in bytes, as io.BytesIO and PEP 3333's 'as documented in "
        "the Python Library Reference' do, so a buffered and a streamed body read the same"
    ),
    "test_wsgi_exc_info": (
        "expects the exception passed to start_response(..., exc_info) to be raised after the "
        "response; before any body byte PEP 3333 lets the app replace its response, so the "
        "gateway sends the app's 500 and raises nothing (a2wsgi sends it, then re-raises)"
    ),
    "test_build_environ": (
        "compares the whole environ: the gateway's has wsgi.errors = sys.stderr (a2wsgi: "
        "sys.stdout) and wsgi.input_terminated = True (so Werkzeug reads chunked bodies)"
    ),
    "test_build_environ_with_env": (
        "same two keys as test_build_environ (wsgi.errors, wsgi.input_terminated)"
    ),
}


class GatewayWSGIMiddleware:
    """``a2wsgi.WSGIMiddleware(app, workers, send_queue_size)`` as the gateway serves a WSGI app."""

    def __init__(self, app: WSGIApp, workers: int = 10, send_queue_size: int = 10) -> None:
        # send_queue_size has no counterpart: the adapter bounds bytes in flight instead.
        self._legacy = LegacyApp(app, threads=workers)
        weakref.finalize(self, self._legacy.close)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._legacy(scope, receive, send)


#: What each a2wsgi name becomes: the adapter, its streamed ``wsgi.input``, its environ builder.
SUBSTITUTES: dict[str, Any] = {
    "WSGIMiddleware": GatewayWSGIMiddleware,
    "Body": StreamedBody,
    "build_environ": build_wsgi_environ,
}
