"""The bookstore's JSON error shape, for the FastAPI services.

The legacy Flask app answers every error as::

    {"error": {"status": 404, "message": "book 9999 not found"}, "request_id": "0b7c..."}

and a route keeps its contract when it moves to a service, so each service installs these::

    app = FastAPI()
    install_error_handlers(app)

``request_id`` is the gateway's id for the request, or ``null`` when the service runs on its own.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.fastapi_support import current_request_id
from new_services.responses import FlaskJSONResponse


def error_response(
    request: Request, status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return FlaskJSONResponse(
        {
            "error": {"status": status, "message": message},
            "request_id": current_request_id(request),
        },
        status_code=status,
        headers=headers,
    )


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    # Registered for Starlette's HTTPException, which FastAPI's subclasses, so the router's own
    # 404 and 405 (with its Allow header) take the same shape.
    assert isinstance(exc, StarletteHTTPException)
    return error_response(request, exc.status_code, str(exc.detail), exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    # Flask answers malformed input with 400, never FastAPI's 422. Endpoints validate their
    # bodies by hand with the legacy messages; this only catches what slips past that.
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    location = ".".join(str(part) for part in first.get("loc", ()))
    return error_response(request, 400, f"{location}: {first.get('msg', 'invalid request')}")


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # No logging here: Starlette re-raises the exception after this response is sent, and the
    # server (or the gateway) logs it with its traceback once.
    return error_response(request, 500, "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
