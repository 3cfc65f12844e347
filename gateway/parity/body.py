"""The request body read as the legacy app reads it: ``request.get_json(silent=True)``.

A FastAPI body parameter answers a malformed or non-JSON body with 422 before the handler runs;
a Flask view that calls ``get_json(silent=True)`` gets ``None`` and answers with its own 400
and message. This dependency gives the handler the same ``None``, so it can answer the same::

    from typing import Annotated, Any
    from fastapi import Depends

    @router.post("/api/books", status_code=201)
    def create_book(payload: Annotated[Any, Depends(legacy_json_body)]) -> Book: ...
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from gateway.parity.reference import legacy_app


async def legacy_json_body(request: Request) -> Any:
    """The decoded JSON body, or ``None`` when it is not JSON (Flask's ``is_json``: the type
    ``application/json`` or ``application/*+json``) or does not decode, with the legacy app's
    JSON provider."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return None
    try:
        return legacy_app().json.loads(await request.body())
    except ValueError:  # JSONDecodeError and UnicodeDecodeError both subclass it
        return None
