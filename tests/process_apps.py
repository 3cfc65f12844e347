"""A Flask app for the process-isolated legacy adapter's tests (``test_legacy_processes.py``):
each worker process imports it by its import string, ``process_apps:create_app``."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, request

from gateway.flask_support import current_identity, current_request_id


def create_app() -> Flask:
    app = Flask("process_apps")
    # An exception reaches the adapter (and the gateway's JSON 500), as a WSGI app's would.
    app.config["PROPAGATE_EXCEPTIONS"] = True

    @app.get("/hello")
    def hello() -> dict[str, Any]:
        return {
            "hello": "legacy",
            "pid": os.getpid(),
            "nice": os.nice(0),
            "scheduler": os.sched_getscheduler(0),
        }

    @app.get("/me")
    def me() -> dict[str, Any]:
        identity = current_identity()
        return {
            "subject": identity.subject,
            "roles": sorted(identity.roles),
            "request_id": current_request_id(),
        }

    @app.post("/upload")
    def upload() -> dict[str, Any]:
        data = request.get_data()
        return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}

    @app.get("/stream")
    def stream() -> Response:
        count = int(request.args.get("count", "3"))

        def lines() -> Iterator[bytes]:
            for number in range(count):
                yield f"line {number}\n".encode()

        return Response(lines(), mimetype="text/plain")

    @app.get("/forever")
    def forever() -> Response:
        marker = request.args["marker"]

        def ticks() -> Iterator[bytes]:
            try:
                while True:
                    yield b"tick\n"
                    time.sleep(0.01)
            finally:
                # close() ran in the worker: the test reads this file.
                with open(marker, "w") as file:
                    file.write("closed")

        return Response(ticks(), mimetype="text/plain")

    @app.get("/firehose")
    def firehose() -> Response:
        counter = request.args["counter"]

        def chunks() -> Iterator[bytes]:
            for number in range(100):
                # How far the view has got, for the test to compare with what it received.
                with open(counter, "w") as file:
                    file.write(str(number + 1))
                yield b"y" * 64 * 1024

        return Response(chunks(), mimetype="application/octet-stream")

    @app.get("/boom")
    def boom() -> dict[str, Any]:
        raise RuntimeError("the view broke")

    @app.get("/crash")
    def crash() -> dict[str, Any]:
        os._exit(3)

    @app.get("/sleep")
    def sleep() -> dict[str, Any]:
        time.sleep(float(request.args.get("seconds", "1")))
        return {"slept": True, "pid": os.getpid()}

    return app
