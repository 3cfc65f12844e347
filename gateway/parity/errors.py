"""Errors on the new side rendered by the legacy app's own Flask error handlers.

A client that got ``{"error": ..., "request_id": ...}`` (or Flask's HTML page, or whatever the
legacy app's handlers write) for a 404 gets the same bytes, status and headers when the route
moves to a service::

    app = FastAPI(default_response_class=LegacyJSONResponse)
    install_legacy_error_handlers(app, standalone=build_error_app)

What is rendered, and how:

- an ``HTTPException`` (the router's 404 and 405, ``raise HTTPException(404, "...")``, the 401
  and 403 of ``require_roles``) becomes the Werkzeug exception of its status (``NotFound``,
  ``MethodNotAllowed`` with the ``Allow`` methods, ...), its detail the description, and its
  headers kept: a detail that is only the status phrase ("Not Found", as the router raises it)
  leaves Werkzeug's own description, the one Flask shows for an unknown URL;
- a ``RequestValidationError`` becomes ``BadRequest`` naming the first problem
  (``query.q: Field required``): Flask has no 422;
- any other exception is handled as Flask handles it: an ``Exception`` handler if the legacy
  app has one, otherwise Flask's ``handle_exception`` (logs it, runs the 500 handler).

Each runs in a request context of the legacy app built from the request (method, path, query,
headers, and the ASGI scope under ``asgi.scope``, so ``gateway.flask_support`` helpers such as
``current_request_id`` work in the handler), through ``finalize_request`` as in Flask (its
``after_request`` functions run too), on a worker thread, since a handler may block.

``standalone``: the Flask app (or a function building it, called once) whose handlers render
errors when the service runs without the gateway (its own tests); by default Flask's defaults.
"""

from __future__ import annotations

import functools
import http
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from flask import Flask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from werkzeug import exceptions as werkzeug_errors

from gateway.context import ENVIRON_SCOPE_KEY
from gateway.parity.reference import bound_app, flask_defaults

Standalone = Flask | Callable[[], Flask] | None


def install_legacy_error_handlers(app: FastAPI, *, standalone: Standalone = None) -> None:
    """Render ``app``'s errors with the legacy app's Flask error handlers (see the module)."""
    fallback = _standalone(standalone)

    def legacy() -> Flask:
        return bound_app() or fallback()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # registered for it
        error = werkzeug_error(exc.status_code, exc.detail, exc.headers)
        return await render_error(legacy(), request.scope, error)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)  # registered for it
        error = werkzeug_errors.BadRequest(_first_problem(exc))
        return await render_error(legacy(), request.scope, error)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_middleware(LegacyServerErrors, legacy=legacy)


class LegacyServerErrors:
    """Unexpected exceptions answered by the legacy app's handlers.

    Not an ``Exception`` handler: Starlette's error middleware re-raises after sending one, and
    the gateway then replaces the answer with its own 500 (``gateway.adapters.services``).
    This sits inside that middleware and answers without re-raising, as Flask does. An
    exception after the response started is re-raised: there is nothing left to answer with.
    """

    def __init__(self, app: ASGIApp, *, legacy: Callable[[], Flask]) -> None:
        self.app = app
        self.legacy = legacy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_watched)
        except Exception as exc:
            if started:
                raise
            response = await render_error(self.legacy(), scope, exc)
            await response(scope, receive, send)


def werkzeug_error(
    status: int, detail: str | None, headers: Mapping[str, str] | None = None
) -> werkzeug_errors.HTTPException:
    """The Werkzeug exception Flask would raise for ``status``, with ``detail`` and headers."""
    extra = dict(headers or {})
    base = werkzeug_errors.default_exceptions.get(status, werkzeug_errors.HTTPException)
    description = None if detail in (None, _phrase(status)) else str(detail)
    carrying = _carrying(base)(description)
    if status == 405:
        allow = extra.pop("Allow", extra.pop("allow", ""))
        carrying.valid_methods = [m.strip() for m in allow.split(",") if m.strip()]
    carrying.code = status
    carrying.extra_headers = list(extra.items())
    error: werkzeug_errors.HTTPException = carrying
    return error


async def render_error(app: Flask, scope: Scope, error: BaseException) -> Response:
    """``error`` as the legacy app answers it, as a Starlette response."""
    status, headers, body = await run_in_threadpool(_handle_in_flask, app, scope, error)
    response = Response(body, status)
    response.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    return response


def _handle_in_flask(
    app: Flask, scope: Scope, error: BaseException
) -> tuple[int, list[tuple[str, str]], bytes]:
    with app.test_request_context(**_request_of(scope)):
        try:
            # Flask's own order (Flask.full_dispatch_request, Flask.wsgi_app): a registered
            # handler for the exception, else handle_exception's 500. handle_user_exception
            # re-raises with a bare ``raise``, so it must run while the exception is handled.
            try:
                raise error
            except Exception as raised:
                answer = app.finalize_request(app.handle_user_exception(raised))
        except Exception as unhandled:
            answer = app.handle_exception(unhandled)
        return answer.status_code, list(answer.headers.items()), answer.get_data()


def _request_of(scope: Scope) -> dict[str, Any]:
    """``test_request_context`` arguments for the ASGI request ``scope``."""
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ())]
    client = scope.get("client")
    return {
        "path": scope.get("path", "/"),
        "method": scope.get("method", "GET"),
        "query_string": scope.get("query_string", b"").decode("latin-1"),
        "headers": headers,
        "base_url": _base_url(scope, dict((k.lower(), v) for k, v in headers)),
        "environ_overrides": {
            ENVIRON_SCOPE_KEY: scope,
            **({"REMOTE_ADDR": client[0]} if client else {}),
        },
    }


def _base_url(scope: Scope, headers: Mapping[str, str]) -> str:
    host = headers.get("host")
    if host is None:
        server = scope.get("server") or ("localhost", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}{scope.get('root_path', '')}"


def _carrying(base: type[werkzeug_errors.HTTPException]) -> type[Any]:
    """``base`` with headers of its own added to ``get_headers``: the ``WWW-Authenticate`` or
    ``Retry-After`` a Starlette exception carried, seen by a legacy handler that copies
    ``error.get_headers()`` as Werkzeug's own subclasses add theirs. One subclass per class;
    Flask finds handlers by status code and by the classes in ``__mro__``, ``base`` among them.
    """
    if base in _CARRYING:
        return _CARRYING[base]

    class Carrying(base):  # type: ignore[valid-type,misc]
        extra_headers: list[tuple[str, str]] = []  # noqa: RUF012 (set per instance)

        def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
            return [*super().get_headers(*args, **kwargs), *self.extra_headers]

    Carrying.__name__ = Carrying.__qualname__ = base.__name__
    return _CARRYING.setdefault(base, Carrying)


_CARRYING: dict[type[werkzeug_errors.HTTPException], type[Any]] = {}


def _phrase(status: int) -> str | None:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return None


def _first_problem(exc: RequestValidationError) -> str:
    errors = exc.errors()
    first = errors[0] if errors else {}
    location = ".".join(str(part) for part in first.get("loc", ()))
    message = first.get("msg", "invalid request")
    return f"{location}: {message}" if location else str(message)


def _standalone(standalone: Standalone) -> Callable[[], Flask]:
    if standalone is None:
        return flask_defaults
    if isinstance(standalone, Flask):
        return lambda: standalone
    return functools.cache(standalone)
