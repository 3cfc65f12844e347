"""Small apps that tests load by import string (``sample_apps:...``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI, Request
from flask import Flask, current_app

log = structlog.get_logger("sample_apps")


def _record(event: str) -> None:
    """Append to $SAMPLE_EVENTS, so a test (or another process) can count lifespan runs."""
    target = os.environ.get("SAMPLE_EVENTS")
    if target:
        with Path(target).open("a") as events:
            events.write(event + "\n")


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


def create_service(name: str = "svc") -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        _record(f"{name}:startup")
        yield {"greeting": f"hello from {name}"}
        _record(f"{name}:shutdown")

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
        _record("failing:startup")
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
