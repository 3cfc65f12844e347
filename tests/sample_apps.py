"""Small apps that tests load by import string (``sample_apps:...``)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import StreamingResponse
from flask import Flask, current_app

log = structlog.get_logger("sample_apps")


def record_event(event: str, variable: str = "SAMPLE_EVENTS") -> None:
    """Append a line to the file ``$variable`` names (when set), so a test in another process
    can see what happened: lifespan runs, calls that reached a service."""
    target = os.environ.get(variable)
    if target:
        with Path(target).open("a") as events:
            events.write(event + "\n")


async def guarded_answer(mode: str) -> Response:
    """What a new side behind a timeout, fallback or breaker answers, as ``mode`` asks: it
    raises, answers 500, hangs past any timeout, or answers ``{"side": "svc"}``."""
    if mode == "raise":
        raise RuntimeError("new side exploded")
    if mode == "500":
        return Response('{"error":"broken"}', status_code=500, media_type="application/json")
    if mode == "hang":
        await asyncio.sleep(30)
    return Response('{"side":"svc"}', media_type="application/json")


def create_flask() -> Flask:
    app = Flask("sample_legacy")

    @app.get("/hello")
    def hello() -> dict[str, str]:
        log.info("legacy.hello")
        current_app.logger.info("legacy hello via app.logger")
        return {"side": "legacy"}

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, Any]:
        return {"id": item_id, "side": "legacy"}

    @app.get("/slash/")
    def slash() -> dict[str, str]:
        return {"side": "legacy", "path": "/slash/"}

    return app


def create_pid_flask() -> Flask:
    """Answers which process served the request: for tests with several worker processes."""
    app = Flask("sample_pid")

    @app.get("/pid")
    def pid() -> dict[str, int]:
        return {"pid": os.getpid()}

    return app


def create_switch_interval_flask() -> Flask:
    """Answers the interpreter's switch interval as its views see it (``[legacy]
    switch_interval``)."""
    app = Flask("sample_switch_interval")

    @app.get("/switch-interval")
    def switch_interval() -> dict[str, float]:
        return {"seconds": sys.getswitchinterval()}

    return app


def create_service(name: str = "svc") -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        record_event(f"{name}:startup")
        yield {"greeting": f"hello from {name}"}
        record_event(f"{name}:shutdown")

    app = FastAPI(lifespan=lifespan)

    @app.get("/items/{item_id}")
    def item(item_id: int, request: Request) -> dict[str, Any]:
        log.info("service.item", item_id=item_id)
        return {"id": item_id, "side": name, "greeting": request.state.greeting}

    @app.get("/slash")
    def slash() -> dict[str, str]:
        return {"side": name, "path": "/slash"}

    return app


def create_failing_service() -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        record_event("failing:startup")
        raise RuntimeError("database unreachable")
        yield

    return FastAPI(lifespan=lifespan)


async def raw_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A raw ASGI app with no lifespan support (it ignores the lifespan scope)."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"raw"})


def openfeature_provider() -> Any:
    """An OpenFeature in-memory provider: catalog-books is "new" for alice and for admins."""
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.flag_evaluation import FlagResolutionDetails, Reason
    from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

    def targeting(
        flag: InMemoryFlag[str], context: EvaluationContext
    ) -> FlagResolutionDetails[str]:
        if context.targeting_key == "alice" or "admin" in context.attributes.get("roles", []):
            return FlagResolutionDetails("new", reason=Reason.TARGETING_MATCH, variant="new")
        return FlagResolutionDetails("legacy", reason=Reason.DEFAULT, variant="legacy")

    variants = {"new": "new", "legacy": "legacy"}
    return InMemoryProvider(
        {
            "catalog-books": InMemoryFlag("legacy", variants, context_evaluator=targeting),
            "accounts-me": InMemoryFlag("new", variants),
        }
    )


class _MethodOverride:
    """The classic WSGI snippet many Flask apps carry: trusts X-HTTP-Method-Override."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        override = environ.get("HTTP_X_HTTP_METHOD_OVERRIDE")
        if override:
            environ["REQUEST_METHOD"] = override.upper()
        return self.app(environ, start_response)


def create_hardening_flask() -> Flask:
    """A legacy app the way real ones are wrapped (ProxyFix, a method-override middleware), with
    handlers that are slow, stuck, endless or read their body as a stream."""
    import hashlib
    import time

    from flask import Response, redirect, request, url_for
    from werkzeug.middleware.proxy_fix import ProxyFix

    app = Flask("hardening_legacy")

    @app.route("/echo", methods=["GET", "POST"])
    def echo() -> dict[str, Any]:
        return {
            "method": request.method,
            "remote_addr": request.remote_addr,
            "scheme": request.scheme,
            "host": request.host,
            "url": url_for("echo", _external=True),
            "headers": {name.lower(): value for name, value in request.headers.items()},
        }

    @app.get("/redirect")
    def go() -> Any:
        return redirect(url_for("echo", _external=True))

    @app.route("/admin/items/<int:item_id>", methods=["POST", "DELETE"])
    def admin_item(item_id: int) -> dict[str, Any]:
        return {"id": item_id, "method": request.method}

    @app.post("/upload")
    @app.post("/upload-big")
    def upload() -> dict[str, Any]:
        digest = hashlib.sha256()
        size = 0
        while chunk := request.stream.read(4096):
            digest.update(chunk)
            size += len(chunk)
        return {"size": size, "sha256": digest.hexdigest()}

    @app.get("/slow")
    def slow() -> dict[str, Any]:
        seconds = float(request.args.get("seconds", "1"))
        time.sleep(seconds)
        log.info("sample.slow_finished", seconds=seconds)
        return {"slept": seconds, "marker": "slow-handler-output"}

    @app.post("/form")
    def form() -> dict[str, Any]:
        return {"fields": len(request.form), "files": len(request.files)}

    @app.get("/big")
    def big() -> Response:
        """``mb`` megabytes in 64 KiB chunks, produced as fast as the client takes them."""
        chunk = b"x" * 65536
        count = int(request.args.get("mb", "1")) * 16

        def chunks() -> Any:
            for _ in range(count):
                yield chunk
            record_event("big:finished")

        return Response(chunks(), mimetype="application/octet-stream")

    @app.get("/stream")
    def stream() -> Response:
        def forever() -> Any:
            while True:
                yield b"tick\n"
                time.sleep(0.05)

        return Response(forever(), mimetype="text/plain")

    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    app.wsgi_app = _MethodOverride(app.wsgi_app)  # type: ignore[method-assign]
    return app


def create_hardening_service(name: str = "svc") -> FastAPI:
    """A new service with a recorded lifespan, a redirect and a streamed body reader."""
    import hashlib

    from fastapi.responses import RedirectResponse

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        record_event(f"{name}:startup")
        log.info("sample.service_started", service=name)
        yield
        record_event(f"{name}:shutdown")
        log.info("sample.service_stopped", service=name)

    app = FastAPI(lifespan=lifespan)

    @app.get("/svc/echo")
    def echo(request: Request) -> dict[str, Any]:
        return {
            "client": request.client.host if request.client else None,
            "scheme": request.url.scheme,
            "url": str(request.url_for("echo")),
        }

    @app.get("/svc/redirect")
    def go(request: Request) -> RedirectResponse:
        return RedirectResponse(str(request.url_for("echo")))

    @app.get("/svc/late-stream")
    async def late_stream(delay: float = 1.0) -> StreamingResponse:
        """A stream whose first chunk comes ``delay`` seconds after its head."""

        async def chunks() -> AsyncIterator[bytes]:
            await asyncio.sleep(delay)
            yield b"first\n"
            yield b"second\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.get("/svc/ticks")
    async def ticks() -> StreamingResponse:
        """A stream that never ends: a line every 50 ms until the client leaves."""

        async def forever() -> AsyncIterator[bytes]:
            while True:
                yield b"tick\n"
                await asyncio.sleep(0.05)

        return StreamingResponse(forever(), media_type="text/plain")

    @app.post("/svc/upload")
    async def upload(request: Request) -> dict[str, Any]:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.stream():
            digest.update(chunk)
            size += len(chunk)
        return {"size": size, "sha256": digest.hexdigest()}

    return app


def create_cors_service() -> FastAPI:
    """A service as FastAPI's documentation writes them: CORS middleware, its own docs, an
    explicit HEAD handler, a route with a trailing slash."""
    app = FastAPI(title="cors-service")
    app.add_middleware(
        CORSMiddleware, allow_origins=["https://app.example"], allow_methods=["GET", "PUT"]
    )

    @app.get("/things/{thing_id}")
    def thing(thing_id: int) -> dict[str, Any]:
        return {"id": thing_id, "side": "cors-service"}

    @app.head("/things/{thing_id}")
    def thing_head(thing_id: int, response: Response) -> None:
        response.headers["x-head"] = f"explicit {thing_id}"

    @app.get("/status/")
    def status() -> dict[str, str]:
        return {"status": "ok"}

    return app


def create_form_flask(max_form_parts: int | None = None) -> Flask:
    """Counts a posted form's fields; ``max_form_parts`` is the app's own ``MAX_FORM_PARTS``."""
    from flask import request

    app = Flask("sample_forms")
    if max_form_parts is not None:
        app.config["MAX_FORM_PARTS"] = max_form_parts

    @app.post("/form")
    def form() -> dict[str, int]:
        return {"fields": len(request.form)}

    return app
