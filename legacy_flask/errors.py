"""Every error leaves the bookstore as JSON of one shape::

    {"error": {"status": 404, "message": "book 9999 not found"}, "request_id": "0b7c..."}

``request_id`` is the gateway's id for the request, or ``null`` when the app runs on its own.
Views raise werkzeug exceptions (``abort(404, "...")``); the handlers here render them.
"""

from __future__ import annotations

import structlog
from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from gateway.flask_support import current_request_id

log = structlog.get_logger(__name__)


def error_response(
    status: int, message: str, headers: list[tuple[str, str]] | None = None
) -> Response:
    response = jsonify(
        error={"status": status, "message": message}, request_id=current_request_id()
    )
    response.status_code = status
    for name, value in headers or ():
        response.headers.add(name, value)
    return response


def handle_http_exception(error: HTTPException) -> Response:
    # Keep the headers the exception carries (WWW-Authenticate on 401, Allow on 405,
    # Retry-After on 503); drop its HTML Content-Type.
    headers = [
        (name, value) for name, value in error.get_headers() if name.lower() != "content-type"
    ]
    return error_response(error.code or 500, error.description or error.name, headers)


def handle_unexpected_error(error: Exception) -> Response:
    # The traceback goes to the log, never to the client.
    log.error("request.unhandled_error", exc_info=error)
    return error_response(500, "internal server error")


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected_error)
