"""Small legacy Flask apps and their FastAPI counterparts for ``test_parity``.

``legacy_app(**json)`` is a Flask app with its own error handlers (a custom JSON shape for
HTTP errors, another for unexpected exceptions, an ``after_request`` header) and a JSON
provider configured by ``json``; ``new_app()`` serves the same routes with the parity
helpers, so each side can be asked the same question.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from flask import Flask, Response, abort, jsonify, request
from werkzeug.exceptions import HTTPException as WerkzeugHTTPException

from gateway.flask_support import current_request_id
from gateway.parity import (
    LegacyJSONResponse,
    install_legacy_error_handlers,
    legacy_json,
    legacy_json_body,
)

#: Keys out of order, non-ASCII text, nesting: what the provider settings change.
DOCUMENT: dict[str, Any] = {
    "zebra": 1,
    "apple": {"ünïcode": "café ☕", "list": [3, 1, 2]},
    "middle": None,
    "float": 1.5,
}


def legacy_app(*, custom_handlers: bool = True, debug: bool = False, **json_settings: Any) -> Flask:
    app = Flask("parity_legacy")
    app.debug = debug  # with compact None (the default), debug mode indents
    for name, value in json_settings.items():
        setattr(app.json, name, value)

    @app.get("/doc")
    def doc() -> Response:
        return jsonify(DOCUMENT)

    @app.get("/pairs")
    def pairs() -> Response:
        return jsonify(b=2, a="ä")

    @app.post("/echo")
    def echo() -> Response:
        return jsonify(got=request.get_json(silent=True))

    @app.get("/things/<int:thing_id>")
    def thing(thing_id: int) -> Response:
        if thing_id == 0:
            abort(400, "thing 0 is reserved")
        if thing_id == 13:
            raise RuntimeError("unlucky")
        abort(404, f"thing {thing_id} not found")

    if custom_handlers:

        @app.errorhandler(WerkzeugHTTPException)
        def http_error(error: WerkzeugHTTPException) -> tuple[Response, int, list[Any]]:
            body = jsonify(
                problem=error.name,
                detail=error.description,
                status=error.code,
                path=request.path,
                request_id=current_request_id(),
            )
            headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
            return body, error.code or 500, headers

        @app.errorhandler(Exception)
        def crash(error: Exception) -> tuple[Response, int]:
            return jsonify(problem="crash", kind=type(error).__name__), 500

        @app.after_request
        def stamp(response: Response) -> Response:
            response.headers["X-Legacy-Stamp"] = "yes"
            return response

    return app


def new_app() -> FastAPI:
    app = FastAPI(default_response_class=LegacyJSONResponse)
    install_legacy_error_handlers(app)

    @app.get("/doc")
    def doc() -> dict[str, Any]:
        return DOCUMENT

    @app.get("/pairs")
    def pairs() -> Any:
        return legacy_json(b=2, a="ä")

    @app.post("/echo")
    def echo(payload: Annotated[Any, Depends(legacy_json_body)]) -> Any:
        return legacy_json(got=payload)

    @app.get("/things/{thing_id:int}")
    def thing(thing_id: int) -> None:
        if thing_id == 0:
            raise HTTPException(400, "thing 0 is reserved")
        if thing_id == 13:
            raise RuntimeError("unlucky")
        raise HTTPException(404, f"thing {thing_id} not found")

    @app.get("/search")
    def search(q: int) -> dict[str, int]:
        return {"q": q}

    return app
