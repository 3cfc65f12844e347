"""JSON rendered byte for byte as the legacy app's ``jsonify`` renders it.

Flask's JSON provider decides the bytes: ``sort_keys`` (default on), ``compact`` (compact
separators unless it is ``False``, or ``None`` in debug mode, which indents by 2),
``ensure_ascii``, the ``default`` for dates, decimals and UUIDs, the trailing newline and the
``mimetype``. Rather than copy those rules (and miss a custom provider's), the body is made by
the legacy app's own provider (``app.json.response``) and taken over with its Content-Type.
For Flask's own provider, a response body skips the ``flask.Response`` that ``response``
builds (measured: about 12 µs of a 30 µs render) and calls its ``dumps`` with the arguments
``response`` would pass; ``tests/test_parity.py`` holds both paths to jsonify's bytes::

    from fastapi import FastAPI

    app = FastAPI(default_response_class=LegacyJSONResponse)

    @app.get("/api/books/{book_id}")
    def book(book_id: int) -> Book: ...                   # rendered as jsonify(book) would be

    @app.get("/api/stats")
    def stats() -> Response:
        return legacy_json(count=3, status_code=200)      # jsonify(count=3)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from flask import Response as FlaskResponse
from flask.json.provider import DefaultJSONProvider
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response
from werkzeug.utils import get_content_type

from gateway.parity.reference import legacy_app


def render_legacy_json(*args: Any, **kwargs: Any) -> tuple[bytes, str]:
    """The body and Content-Type of ``jsonify(*args, **kwargs)`` in the legacy app."""
    # Flask's annotation is the sans-IO Response; it is the app's response_class, a flask one.
    rendered = cast(FlaskResponse, legacy_app().json.response(*args, **kwargs))
    return rendered.get_data(), rendered.headers["Content-Type"]


def _render_one(content: Any) -> tuple[bytes, str]:
    """``render_legacy_json(content)``, without a ``flask.Response`` for Flask's own provider."""
    app = legacy_app()
    provider = app.json
    if not (
        isinstance(provider, DefaultJSONProvider)
        and type(provider).response is DefaultJSONProvider.response
    ):
        return render_legacy_json(content)
    # The arguments DefaultJSONProvider.response passes to dumps (Flask 3.1).
    if (provider.compact is None and app.debug) or provider.compact is False:
        text = provider.dumps(content, indent=2)
    else:
        text = provider.dumps(content, separators=(",", ":"))
    return f"{text}\n".encode(), get_content_type(provider.mimetype, "utf-8")


class LegacyJSONResponse(JSONResponse):
    """A ``JSONResponse`` whose body and Content-Type are the legacy app's ``jsonify``'s."""

    def render(self, content: Any) -> bytes:
        body, content_type = _render_one(content)
        # Starlette's Response.__init__ calls render() and then init_headers(), which writes
        # media_type as the Content-Type: set here, it is the provider's (with its charset,
        # when Werkzeug adds one), not Starlette's "application/json".
        self.media_type = content_type
        return body


def legacy_json(
    *args: Any,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    background: BackgroundTask | None = None,
    **kwargs: Any,
) -> Response:
    """``jsonify(*args, **kwargs)`` as a Starlette response: one value as it is, several as a
    list, keyword arguments as an object (not both)."""
    body, content_type = render_legacy_json(*args, **kwargs)
    return Response(
        body, status_code, headers=headers, media_type=content_type, background=background
    )
