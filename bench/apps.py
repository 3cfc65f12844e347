"""Tiny apps for the benchmarks: the same handlers behind the gateway and behind direct servers.

Each pair answers the same bytes whichever server runs it, so a throughput difference is the
serving path's cost, not the handler's::

    gateway serve -c bench/gateway.toml              # /legacy/hello, /new/hello, /trivial
    uvicorn bench.apps:fastapi_app                   # /new/hello, /new/plain, direct
    gunicorn -w 1 -k sync bench.apps:flask_app       # /legacy/hello, direct
    uvicorn bench.apps:plain_a2wsgi                  # /legacy/hello through plain a2wsgi
    uvicorn bench.apps:trivial_asgi                  # /trivial (any path), direct
    uvicorn bench.apps:combined_asgi                 # /legacy/* on plain a2wsgi, the rest FastAPI

The module-level app objects exist only as entry points for those direct servers; the gateway
builds its own apps from the factories (``create_flask``, ``create_fastapi``).
"""

from __future__ import annotations

from typing import Any

from a2wsgi import WSGIMiddleware
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from flask import Flask
from starlette.types import Receive, Scope, Send

#: The gateway's legacy thread pool size in ``bench/gateway.toml``; plain a2wsgi gets the same.
LEGACY_THREADS = 8

_TRIVIAL_BODY = b"ok"
_TRIVIAL_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"2")]


def create_flask() -> Flask:
    app = Flask("bench_legacy")

    @app.get("/legacy/hello")
    def hello() -> dict[str, Any]:
        return {"hello": "legacy", "n": 1}

    @app.get("/shadow/on")
    @app.get("/shadow/off")
    def shadowed() -> dict[str, Any]:
        # Legacy answers both in bench/shadow_bench.py; /shadow/on also sends a copy to FastAPI.
        return {"hello": "shadow", "n": 1}

    return app


def create_fastapi() -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/new/hello")
    async def hello() -> dict[str, Any]:
        return {"hello": "new", "n": 1}

    @app.get("/new/flagged")
    async def flagged() -> dict[str, Any]:
        # The same handler as /new/hello, behind a canary flag in bench/gateway.toml.
        return {"hello": "new", "n": 1}

    @app.get("/shadow/on")
    @app.get("/shadow/off")
    async def shadowed() -> dict[str, Any]:
        # The candidate of bench/shadow_bench.py: the same JSON as the legacy handler.
        return {"hello": "shadow", "n": 1}

    @app.get("/new/plain", response_class=PlainTextResponse)
    async def plain() -> str:
        return "hello"

    return app


def create_single_route_app(path: str) -> FastAPI:
    """A FastAPI app with one route at ``path``: the canary benchmark serves /canary/flagged and
    /canary/plain from two of these, so they differ only in the gateway's flag decision."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get(path)
    async def hello() -> dict[str, Any]:
        return {"hello": "new", "n": 1}

    return app


async def trivial_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    """200 with a 2-byte body at any path: the floor of what an ASGI server can serve."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": _TRIVIAL_HEADERS})
    await send({"type": "http.response.body", "body": _TRIVIAL_BODY})


flask_app = create_flask()
fastapi_app = create_fastapi()
# a2wsgi types the environ as a TypedDict, Flask as a dict: the same object at run time.
plain_a2wsgi = WSGIMiddleware(create_flask(), workers=LEGACY_THREADS)  # type: ignore[arg-type]


async def combined_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    """The gateway's two apps on bare uvicorn, with no gateway: ``/legacy/...`` to plain a2wsgi,
    everything else (the lifespan too) to FastAPI. ``bench/startup_memory.py`` compares it."""
    legacy = scope["type"] == "http" and scope["path"].startswith("/legacy/")
    await (plain_a2wsgi if legacy else fastapi_app)(scope, receive, send)
