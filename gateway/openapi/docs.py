"""The merged document and Swagger UI, as routes of the gateway's admin app (admins only).

- ``GET /_gateway/openapi/app.json``: the whole application's OpenAPI 3.1 document
  (``gateway.openapi.document``);
- ``GET /_gateway/docs``: Swagger UI showing it;
- ``GET /_gateway/docs/static/{name}``: its assets, shipped in the package, never from a CDN:
  Swagger UI's bundle and stylesheet from ``fastapi-offline`` (a maintained package that ships
  them), the page's start-up code from here.

The page and its assets carry a strict Content-Security-Policy: scripts and styles from this
origin only, no inline script (the start-up code is ``static/init.js``), no frames, no form
posts, fetches to this origin only::

    api.include_router(docs_router(document))     # gateway.admin does it
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio.to_thread
import fastapi_offline
from fastapi import APIRouter
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, JSONResponse, Response

from gateway.openapi.document import AppDocument

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_OWN = Path(__file__).parent / "static"
#: fastapi-offline's files (pyproject.toml bounds the release; tests/test_upstream_internals.py
#: checks they are where this says).
VENDORED = Path(fastapi_offline.__file__).parent / "static"
#: Every asset the page may load, by the name it asks for; anything else is 404.
ASSETS: dict[str, tuple[Path, str]] = {
    "swagger-ui-bundle.js": (VENDORED / "swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": (VENDORED / "swagger-ui.css", "text/css"),
    "favicon.png": (VENDORED / "favicon.png", "image/png"),
    "init.js": (_OWN / "init.js", "text/javascript"),
}


def docs_router(document: AppDocument) -> APIRouter:
    # Not in the gateway's own document: these describe the application, not the gateway.
    router = APIRouter(prefix="/_gateway", include_in_schema=False)

    @router.get("/openapi/app.json")
    async def app_document() -> Response:
        # Building reads the samples files and runs every service's schema generation.
        rendered: dict[str, Any] = await anyio.to_thread.run_sync(document.render)
        return JSONResponse(rendered)

    @router.get("/docs")
    async def swagger_ui() -> Response:
        return FileResponse(_OWN / "index.html", media_type="text/html", headers=_HEADERS)

    @router.get("/docs/static/{name}")
    async def asset(name: str) -> Response:
        found = ASSETS.get(name)
        if found is None:
            raise HTTPException(404)
        path, media_type = found
        return FileResponse(path, media_type=media_type, headers=_HEADERS)

    return router
