"""Apps and a server helper for the hardening benchmarks (``soak.py``, ``saturation.py``).

``create_flask`` has a fast, a slow (sleeping), a CPU-burning, an endless streamed and an upload
handler; ``create_fastapi``
a fast and an upload handler. ``serving(config)`` runs ``gateway serve`` on a free loopback port
with that config (written to a temporary folder; this repository is importable) and stops it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from flask import Flask, Response, request

from bench.servers import free_port, wait_until_ready

REPO = Path(__file__).resolve().parent.parent


#: ``saturation.py --switch-interval``: the interpreter's switch interval in the server, set
#: when the legacy app is built (a benchmark knob; ``[legacy] switch_interval`` does it for real).
SWITCH_INTERVAL_ENV = "BENCH_SWITCH_INTERVAL"


def burn(milliseconds: float) -> int:
    """Pure-Python work for about ``milliseconds`` of CPU: it holds the GIL, as a view that
    renders templates or crunches numbers does, except when the interpreter switches threads."""
    end = time.thread_time() + milliseconds / 1000
    count = 0
    while time.thread_time() < end:
        for number in range(200):
            count += number * number % 7
    return count


def create_flask() -> Flask:
    app = Flask("bench_hardening_legacy")
    interval = os.environ.get(SWITCH_INTERVAL_ENV)
    if interval:
        sys.setswitchinterval(float(interval))

    @app.get("/legacy/hello")
    def hello() -> dict[str, Any]:
        return {"hello": "legacy"}

    @app.get("/legacy/slow")
    def slow() -> dict[str, Any]:
        time.sleep(float(request.args.get("seconds", "0.2")))
        return {"slow": True}

    @app.get("/legacy/burn")
    def burning() -> dict[str, Any]:
        return {"burnt": burn(float(request.args.get("ms", "10")))}

    @app.get("/legacy/stream")
    def stream() -> Response:
        def forever() -> Iterator[bytes]:
            while True:
                yield b"tick\n"
                time.sleep(0.01)

        return Response(forever(), mimetype="text/plain")

    @app.post("/legacy/upload")
    def upload() -> dict[str, Any]:
        return {"size": len(request.get_data())}

    return app


def create_fastapi() -> FastAPI:
    app = FastAPI()

    @app.get("/new/hello")
    async def hello() -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"hello": "new"}

    @app.post("/new/upload")
    async def upload(request: Request) -> dict[str, Any]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"size": size}

    return app


BASE_CONFIG = """
[logging]
format = "json"
level = "warning"
access_log = true

[limits]
max_body_size = 4096

[legacy]
app = "bench.hardening_apps:create_flask"
{pool}
queue_timeout = {queue_timeout}

[services.fast]
app = "bench.hardening_apps:create_fastapi"

[[routes]]
path = "/new/hello"
methods = ["GET"]
backend = "fast"

[[routes]]
path = "/new/upload"
methods = ["POST"]
backend = "fast"
"""


@contextmanager
def serving(
    *,
    threads: int = 8,
    queue_timeout: float = 5.0,
    switch_interval: float | None = None,
    processes: int | None = None,
    nice: int = 10,
    scheduling: str = "normal",
) -> Iterator[tuple[int, int]]:
    """``gateway serve`` with ``BASE_CONFIG``; yields (port, pid). ``switch_interval``: the
    server's ``sys.setswitchinterval`` (``None``: the interpreter's default, 5 ms).
    ``processes``: the legacy app in that many worker processes (``isolation = "processes"``)
    instead of on ``threads``, at ``nice`` below the gateway's priority, or with ``scheduling =
    "idle"``."""
    port = free_port()
    priority = 'scheduling = "idle"' if scheduling == "idle" else f"nice = {nice}"
    pool = (
        f"threads = {threads}"
        if processes is None
        else f'isolation = "processes"\nprocesses = {processes}\n{priority}'
    )
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "gateway.toml"
        config.write_text(BASE_CONFIG.format(pool=pool, queue_timeout=queue_timeout))
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}"
        env.pop(SWITCH_INTERVAL_ENV, None)
        if switch_interval is not None:
            env[SWITCH_INTERVAL_ENV] = str(switch_interval)
        with (Path(folder) / "gateway.log").open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway.cli",
                    "serve",
                    "-c",
                    str(config),
                    "--port",
                    str(port),
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            log_path = Path(folder) / "gateway.log"
            wait_until_ready(process, port, "/_gateway/ready", log_path, timeout=30)
            yield port, process.pid
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
