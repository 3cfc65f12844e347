"""A legacy app and a candidate service that disagree on purpose, for shadow and fallback tests.

Loaded by import string from test configs (``shadow_apps:create_legacy``, ...). Every call the
candidate receives is appended to ``$SHADOW_EVENTS`` when set, so a test in another process can
see what reached it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI, Response
from flask import Flask
from sample_apps import guarded_answer, record_event


def _record(event: str) -> None:
    record_event(event, "SHADOW_EVENTS")


def create_legacy() -> Flask:
    app = Flask("shadow_legacy")

    @app.get("/thing/<int:thing_id>")
    @app.get("/stable/<int:thing_id>")
    def thing(thing_id: int) -> dict[str, Any]:
        return {"id": thing_id, "name": "thing", "tags": ["a", "b"], "generated_at": time.time_ns()}

    @app.post("/thing/<int:thing_id>")
    def post_thing(thing_id: int) -> dict[str, Any]:
        return {"id": thing_id, "posted": True}

    @app.get("/slow")
    @app.get("/boom")
    def quick() -> dict[str, str]:
        return {"side": "legacy"}

    @app.get("/guarded/<mode>")
    @app.put("/guarded/<mode>")
    @app.post("/guarded/<mode>")
    def guarded(mode: str) -> dict[str, str]:
        from flask import request

        return {"side": "legacy", "mode": mode, "body": request.get_data(as_text=True)}

    @app.get("/fragile")
    def fragile() -> dict[str, str]:
        return {"side": "legacy"}

    return app


def create_candidate() -> FastAPI:
    app = FastAPI()
    failing = {"on": True}

    @app.get("/thing/{thing_id}")
    async def thing(thing_id: int) -> dict[str, Any]:
        _record(f"GET /thing/{thing_id}")
        # Deliberate: the name is capitalised, and the tags come in another order.
        return {"id": thing_id, "name": "Thing", "tags": ["b", "a"], "generated_at": time.time_ns()}

    @app.post("/thing/{thing_id}")
    async def post_thing(thing_id: int) -> dict[str, Any]:
        _record(f"POST /thing/{thing_id}")
        return {"id": thing_id, "posted": True}

    @app.get("/stable/{thing_id}")
    async def stable(thing_id: int) -> dict[str, Any]:
        _record(f"GET /stable/{thing_id}")
        return {"id": thing_id, "name": "thing", "tags": ["b", "a"], "generated_at": time.time_ns()}

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        _record("GET /slow")
        await asyncio.sleep(3)
        return {"side": "legacy"}

    @app.get("/boom")
    async def boom() -> dict[str, str]:
        _record("GET /boom")
        raise RuntimeError("candidate exploded")

    @app.api_route("/guarded/{mode}", methods=["GET", "PUT", "POST"])
    async def guarded(mode: str) -> Response:
        _record(f"guarded {mode}")
        return await guarded_answer(mode)

    @app.get("/fragile")
    async def fragile() -> Response:
        _record("GET /fragile")
        if failing["on"]:
            return Response('{"error":"down"}', status_code=503, media_type="application/json")
        return Response('{"side":"svc"}', media_type="application/json")

    @app.put("/fragile-control")
    async def control(on: bool) -> dict[str, bool]:
        failing["on"] = on
        return {"failing": on}

    return app
