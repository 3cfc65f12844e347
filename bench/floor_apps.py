"""The bench endpoints behind the gateway's request-context layer alone, on bare uvicorn.

``ablation_bench.py --floor`` serves these next to the whole gateway and the endpoint with no
gateway at all, to show the least a gateway of this design pays per request: the request context
(request id, canonical path, the request's facts, the ``send`` wrapper) without and with the JSON
access line, written exactly as ``gateway serve`` writes it (``gateway.log``'s pipeline and line
sink, to stdout, which the bench sends to a file)::

    uvicorn bench.floor_apps:trivial_context --no-access-log   # /trivial, no access line
    uvicorn bench.floor_apps:trivial_logged --no-access-log    # /trivial, one JSON line each
    uvicorn bench.floor_apps:new_logged --no-access-log        # /new/hello (FastAPI)
    uvicorn bench.floor_apps:legacy_adapter --no-access-log    # /legacy/hello: the adapter alone
    uvicorn bench.floor_apps:legacy_logged --no-access-log     # the same behind the context

The legacy adapter is the one ``gateway serve -c bench/gateway.toml`` builds (its threads and
timeouts), entered and left in the lifespan as the gateway does. No auth, no limits, no routing,
no metrics: not a gateway, only its floor.
"""

from __future__ import annotations

from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from bench.apps import create_fastapi, trivial_asgi
from gateway.build import build_legacy
from gateway.log import configure_logging
from gateway.middleware.request_context import RequestContextMiddleware
from gateway.settings import load_settings

configure_logging(format="json", level="info")


def _context(app: ASGIApp, *, line: bool) -> RequestContextMiddleware:
    return RequestContextMiddleware(app, access_log=line, backend_header=False)


class _LegacyAdapter:
    """The gateway's legacy adapter for ``bench/gateway.toml``, with its lifespan."""

    def __init__(self) -> None:
        settings = load_settings(Path(__file__).with_name("gateway.toml"), {})
        self.adapter = build_legacy(settings)[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.adapter(scope, receive, send)
            return
        await receive()  # lifespan.startup
        async with self.adapter:
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})


trivial_context = _context(trivial_asgi, line=False)
trivial_logged = _context(trivial_asgi, line=True)
new_context = _context(create_fastapi(), line=False)
new_logged = _context(create_fastapi(), line=True)
legacy_adapter = _LegacyAdapter()
legacy_context = _context(legacy_adapter, line=False)
legacy_logged = _context(legacy_adapter, line=True)
