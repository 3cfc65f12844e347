"""A new side whose health the test steers: ``GET /api/books`` answers like the demo's catalog,
fails with 500, or answers slowly, depending on what the file ``mode_file`` says right now."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse

#: Seconds a "slow" answer takes: far above the demo legacy's few milliseconds (5x and more).
SLOW = 0.05


def create_app(mode_file: str) -> FastAPI:
    mode = Path(mode_file)
    app = FastAPI()

    @app.get("/api/books")
    async def books() -> JSONResponse:
        now = mode.read_text().strip() if mode.exists() else "ok"
        if now == "fail":
            return JSONResponse({"error": "broken on purpose"}, status_code=500)
        if now == "slow":
            await asyncio.sleep(SLOW)
        return JSONResponse([{"id": 1, "title": "Dune"}])

    return app
