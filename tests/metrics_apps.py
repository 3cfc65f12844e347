"""A legacy app and a service with one route of each kind the metrics label, for the metrics
tests (``metrics_apps:create_legacy``, ``metrics_apps:create_service``), and the config they
share."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from fastapi import FastAPI, Response
from flask import Flask

#: The apps, and an admin (``X-API-Key: test-admin-key``, a test-only key) and a user
#: (``test-user-key``) by their keys' SHA-256. Each test adds its own ``[legacy]`` keys first.
APPS = """
app = "metrics_apps:create_legacy"
[services.svc]
app = "metrics_apps:create_service"

[auth]
order = ["api-key"]
default_access = "public"
[auth.api_keys]
[[auth.api_keys.keys]]
name = "test-admin"
sha256 = "944650a7cd0f9e14d5c4fb15edbffb7fa45fb9ed36a4fa9be3d7e5476ae51bd9"
roles = ["admin"]
[[auth.api_keys.keys]]
name = "test-user"
sha256 = "d3b2fd8274017751cc95b3b55973ae90951714bc1755f08aad059f62d66553bd"
roles = ["user"]
"""

#: A service route, and one behind a flag (declared here) that sends it to the service.
ROUTES = """
[[routes]]
path = "/new/hello"
methods = ["GET"]
backend = "svc"

[[routes]]
path = "/flagged/{n:int}"
methods = ["GET"]
backend = "svc"
[routes.flag]
name = "flagged"
mode = "new"
"""


def create_legacy() -> Flask:
    app = Flask("metrics_legacy")

    @app.get("/legacy/hello")
    def hello() -> dict[str, str]:
        return {"side": "legacy"}

    @app.get("/legacy/items/<int:item_id>")
    def item(item_id: int) -> dict[str, Any]:
        return {"id": item_id}

    @app.get("/legacy/pid")
    def pid() -> dict[str, int]:
        return {"pid": os.getpid()}

    @app.get("/legacy/private/<int:n>")
    def private(n: int) -> dict[str, int]:
        return {"n": n}

    @app.get("/legacy/slow")
    def slow() -> dict[str, str]:
        time.sleep(0.5)
        return {"side": "legacy"}

    @app.get("/flagged/<int:n>")
    @app.get("/guarded/<mode>")
    def other_side(**_: Any) -> dict[str, str]:
        return {"side": "legacy"}

    @app.route("/shadowed", methods=["GET", "POST"])
    def shadowed() -> dict[str, int]:
        return {"answer": 1}

    return app


def create_service() -> FastAPI:
    app = FastAPI()

    @app.get("/new/hello")
    async def hello() -> dict[str, str]:
        return {"side": "svc"}

    @app.get("/flagged/{n}")
    async def flagged(n: int) -> dict[str, str]:
        return {"side": "svc"}

    @app.get("/guarded/{mode}")
    async def guarded(mode: str) -> Response:
        if mode == "raise":
            raise RuntimeError("new side exploded")
        if mode == "500":
            return Response('{"error":"broken"}', status_code=500, media_type="application/json")
        if mode == "hang":
            await asyncio.sleep(30)
        return Response('{"side":"svc"}', media_type="application/json")

    @app.api_route("/shadowed", methods=["GET", "POST"])
    async def shadowed() -> dict[str, int]:
        return {"answer": 2}  # deliberately not legacy's answer

    return app
