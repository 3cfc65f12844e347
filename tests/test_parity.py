"""The parity helpers (``gateway.parity``): a service answers with the legacy app's bytes.

Each test asks the same question of a legacy Flask app (through a2wsgi, as the gateway runs
it) and of a FastAPI app using the helpers behind the gateway's services adapter, which binds
the legacy app; both see the gateway's facts (request id) in the scope.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from a2wsgi import WSGIMiddleware
from flask import Flask
from parity_apps import DOCUMENT, legacy_app, new_app
from starlette.testclient import TestClient
from starlette.types import ASGIApp
from support import REPO, GatewayProcess, demo_config, eventually, through_gateway

from gateway.adapters.services import Service
from gateway.context import ANONYMOUS
from gateway.parity import legacy_json

REQUEST_ID = "req-parity"


class Sides:
    def __init__(self, flask_app: Flask, stack: ExitStack) -> None:
        legacy = cast(ASGIApp, WSGIMiddleware(cast(Any, flask_app)))
        new = Service("svc", new_app(), legacy=flask_app)
        self.legacy = stack.enter_context(
            TestClient(
                through_gateway(legacy, ANONYMOUS, REQUEST_ID), raise_server_exceptions=False
            )
        )
        self.new = stack.enter_context(TestClient(through_gateway(new, ANONYMOUS, REQUEST_ID)))

    def both(self, method: str, path: str) -> tuple[Any, Any]:
        return self.legacy.request(method, path), self.new.request(method, path)


@pytest.fixture
def sides() -> Iterator[Any]:
    with ExitStack() as stack:
        yield lambda flask_app: Sides(flask_app, stack)


def assert_same(legacy: Any, new: Any) -> None:
    assert new.status_code == legacy.status_code, (legacy.text, new.text)
    assert new.content == legacy.content
    assert new.headers["content-type"] == legacy.headers["content-type"]


# -- JSON -----------------------------------------------------------------------------------------

JSON_SETTINGS = [
    pytest.param({}, id="flask defaults"),
    pytest.param({"sort_keys": False}, id="sort_keys False"),
    pytest.param({"compact": False}, id="compact False (indented)"),
    pytest.param({"debug": True}, id="debug mode (indented)"),
    pytest.param({"debug": True, "compact": True}, id="debug mode, compact True"),
    pytest.param({"ensure_ascii": False}, id="ensure_ascii False"),
    pytest.param({"mimetype": "application/vnd.bookstore+json"}, id="custom mimetype"),
    pytest.param({"mimetype": "text/json"}, id="text mimetype gets a charset"),
    pytest.param({"sort_keys": False, "ensure_ascii": False, "compact": False}, id="all three"),
]


@pytest.mark.parametrize("settings", JSON_SETTINGS)
@pytest.mark.parametrize("path", ["/doc", "/pairs"])
def test_json_bytes_equal_jsonify(sides: Any, settings: dict[str, Any], path: str) -> None:
    legacy, new = sides(legacy_app(**settings)).both("GET", path)
    assert legacy.status_code == 200
    assert_same(legacy, new)
    assert new.content.endswith(b"}\n")  # jsonify's trailing newline


def test_the_settings_really_change_the_bytes(sides: Any) -> None:
    # Guards the test above: if the helpers ignored the provider, the defaults would still pass.
    plain = sides(legacy_app()).new.get("/doc").content
    unsorted = sides(legacy_app(sort_keys=False, ensure_ascii=False)).new.get("/doc").content
    assert plain.startswith(b'{"apple":{"list":[3,1,2],"\\u00fcn\\u00efcode"')
    assert unsorted.startswith('{"zebra":1,"apple":{"ünïcode":"café ☕"'.encode())


def test_standalone_json_is_flasks_default() -> None:
    # No gateway, no bound legacy app: Flask's defaults.
    response = legacy_json(DOCUMENT)
    with Flask("defaults").app_context():
        from flask import jsonify

        assert response.body == jsonify(DOCUMENT).get_data()
    assert response.media_type == "application/json"


@pytest.mark.parametrize(
    ("content_type", "body", "got"),
    [
        ("application/json", b'{"title": "Dune"}', {"title": "Dune"}),
        ("application/vnd.api+json; charset=utf-8", b"[1, 2]", [1, 2]),
        ("application/json", b'{"title": ', None),  # malformed: None, not a 422
        ("application/json", b"\xff\xfe", None),  # not UTF-8
        ("text/plain", b'{"title": "Dune"}', None),  # not declared JSON
    ],
)
def test_the_body_reads_as_get_json_silent(
    sides: Any, content_type: str, body: bytes, got: object
) -> None:
    both = sides(legacy_app())
    request = {"content": body, "headers": {"Content-Type": content_type}}
    legacy = both.legacy.post("/echo", **request)
    new = both.new.post("/echo", **request)
    assert legacy.json() == {"got": got}
    assert_same(legacy, new)


# -- errors ---------------------------------------------------------------------------------------

ERRORS = [
    pytest.param("GET", "/things/0", 400, id="400 raised"),
    pytest.param("GET", "/things/7", 404, id="404 raised with a message"),
    pytest.param("GET", "/nowhere", 404, id="404 from the router"),
    pytest.param("GET", "/things/abc", 404, id="404 from the int converter"),
    pytest.param("POST", "/things/7", 405, id="405 from the router"),
    pytest.param("GET", "/things/13", 500, id="500 from an unexpected exception"),
]


@pytest.mark.parametrize("custom", [True, False], ids=["custom handlers", "flask's handlers"])
@pytest.mark.parametrize(("method", "path", "status"), ERRORS)
def test_error_bodies_equal_the_legacy_apps(
    sides: Any, custom: bool, method: str, path: str, status: int
) -> None:
    legacy, new = sides(legacy_app(custom_handlers=custom)).both(method, path)
    assert legacy.status_code == status
    assert_same(legacy, new)
    if custom and status == 500:
        assert new.json() == {"kind": "RuntimeError", "problem": "crash"}
    elif custom:
        assert new.json()["request_id"] == REQUEST_ID  # the legacy handler saw the gateway's id
        assert new.headers["x-legacy-stamp"] == "yes"  # after_request ran, as in Flask
    else:
        assert new.headers["content-type"] == "text/html; charset=utf-8"  # Flask's own page


def test_405_keeps_the_allow_header(sides: Any) -> None:
    legacy, new = sides(legacy_app()).both("POST", "/things/7")
    assert new.status_code == 405
    # Flask lists HEAD and OPTIONS too; the service lists what it serves. Both say GET.
    assert "GET" in legacy.headers["allow"]
    assert new.headers["allow"] == "GET"


def test_a_validation_error_is_a_legacy_400(sides: Any) -> None:
    new = sides(legacy_app()).new.get("/search?q=abc")
    assert new.status_code == 400  # never FastAPI's 422
    assert new.json() == {
        "detail": "query.q: Input should be a valid integer, unable to parse string as an integer",
        "path": "/search",
        "problem": "Bad Request",
        "request_id": REQUEST_ID,
        "status": 400,
    }


def test_standalone_errors_use_the_given_app() -> None:
    from fastapi import FastAPI

    from gateway.parity import LegacyJSONResponse, install_legacy_error_handlers

    app = FastAPI(default_response_class=LegacyJSONResponse)
    install_legacy_error_handlers(app, standalone=lambda: legacy_app(compact=False))
    with TestClient(app) as client:
        response = client.get("/missing")
    assert response.status_code == 404
    assert response.json()["problem"] == "Not Found"
    assert response.json()["request_id"] is None  # no gateway, no request id
    assert b'\n  "detail"' in response.content  # the given app's provider (indented)


def test_standalone_default_is_flasks_error_page() -> None:
    from fastapi import FastAPI

    from gateway.parity import install_legacy_error_handlers

    app = FastAPI()
    install_legacy_error_handlers(app)
    with TestClient(app) as client:
        response = client.get("/missing")
    flask_page = Flask("bare").test_client().get("/missing")
    assert (response.status_code, response.content) == (404, flask_page.data)


# -- the demo, under a real gateway serve ----------------------------------------------------------


@pytest.mark.e2e
def test_demo_catalog_errors_equal_legacys_under_gateway_serve(tmp_path: Path) -> None:
    config = demo_config(tmp_path, flags={"catalog-books": {"mode": "legacy"}})
    gateway = GatewayProcess(config).start()
    try:

        def answer(request_id: str) -> httpx.Response:
            url = f"{gateway.base_url}/api/books/9999"
            return httpx.get(url, headers={"X-Request-ID": request_id}, timeout=5)

        legacy = answer("same-id")
        assert legacy.headers["x-gateway-backend"] == "legacy"
        command = ["flags", "set", "catalog-books", "--mode", "new", "--config", str(config)]
        flip = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *command],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert flip.returncode == 0, flip.stderr
        assert eventually(lambda: answer("probe").headers["x-gateway-backend"] == "catalog")
        new = answer("same-id")
        assert (new.status_code, new.content) == (404, legacy.content)
        assert new.headers["content-type"] == legacy.headers["content-type"]
        assert new.json()["request_id"] == "same-id"
    finally:
        gateway.stop()
