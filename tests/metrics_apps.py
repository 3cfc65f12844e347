"""A legacy app and a service with one route of each kind the metrics label, for the metrics
tests (``apps_config("metrics_apps")`` loads them), and the routes they share."""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import FastAPI, Response
from flask import Flask
from sample_apps import guarded_answer

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
        return await guarded_answer(mode)

    @app.api_route("/shadowed", methods=["GET", "POST"])
    async def shadowed() -> dict[str, int]:
        return {"answer": 2}  # deliberately not legacy's answer

    return app
