"""The merged OpenAPI document (``gateway.openapi``): the demo's, in process, and small apps of
our own for the converters, docstrings, component clashes and recorded samples."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from flask import Flask
from openapi_spec_validator import validate
from pydantic import create_model
from starlette.testclient import TestClient
from structlog.testing import capture_logs
from support import demo_config

from gateway.app import GatewayApp, create_app
from gateway.flags.runtime import FlagRuntime
from gateway.flags.stores import FlagStore
from gateway.inventory import service_routes
from gateway.openapi.document import AppDocument
from gateway.openapi.extension import retired_routes, x_gateway
from gateway.openapi.legacy import legacy_operations
from gateway.path_template import shape
from gateway.recording.samples import (
    Body,
    RecordedRequest,
    RecordedResponse,
    Sample,
    append_samples,
    sample_path,
)
from gateway.route_plan import RoutePlan
from gateway.routes import RouteTable
from gateway.settings import load_settings
from gateway.shadow.runner import ShadowPlan
from gateway.storage.memory import MemoryStorage

DOCUMENT = "/_gateway/openapi/app.json"
JSON = (("content-type", "application/json"),)


@pytest.fixture
def gateway(tmp_path: Path) -> GatewayApp:
    return create_app(
        load_settings(demo_config(tmp_path, flags=None), {"GATEWAY_FLAGS__STORE": "memory"})
    )


@pytest.fixture
def client(gateway: GatewayApp) -> Iterator[TestClient]:
    with TestClient(gateway, base_url="http://localhost") as test_client:
        yield test_client


@pytest.fixture
def admin(client: TestClient) -> TestClient:
    login = client.post("/login", data={"username": "alice", "password": "wonderland"})
    assert login.status_code == 200
    # A cookie-signed change must say it is not cross-site (gateway.csrf), as the page does.
    client.headers["X-Gateway-CSRF"] = "1"
    return client


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


# -- the demo -------------------------------------------------------------------------------------


def test_the_demo_document_is_valid_openapi_3_1(admin: TestClient) -> None:
    answer = admin.get(DOCUMENT)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["cache-control"] == "no-store"
    document = answer.json()
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on anything OpenAPI 3.1 does not allow


def test_every_flask_rule_and_service_route_is_listed_once(
    admin: TestClient, gateway: GatewayApp
) -> None:
    listed = [(method, shape(path)) for method, path in operations(admin.get(DOCUMENT).json())]
    assert len(listed) == len(set(listed))  # once each
    expected = {
        (method, shape(rule.rule.replace("<", "{").replace(">", "}")))
        for rule in gateway.legacy.wsgi_app.url_map.iter_rules()
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    for service in gateway.services.values():
        expected |= {
            (method, shape(template))
            for template, methods, _ in service_routes(service.app)
            if template not in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")
            for method in methods
        }
    assert set(listed) == expected
    assert not [path for _, path in listed if path.startswith("/_gateway/")]


def test_a_route_both_sides_serve_is_the_service_operation_marked_with_both(
    admin: TestClient,
) -> None:
    ops = operations(admin.get(DOCUMENT).json())
    book = ops[("GET", "/api/books/{book_id}")]
    assert book["operationId"] == "get_book_api_books__book_id__get"  # the catalog's
    assert book["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Book"
    }
    assert book["x-gateway"] == {
        "state": "canary",
        "served_by": ["catalog", "legacy"],
        "backend": "catalog",
        "flag": {"name": "catalog-books", "mode": "canary", "percentage": 50, "source": "default"},
        "legacy_endpoint": "books.get_book",
        "services": ["catalog"],
        "access": "public",
    }
    assert book["security"] == []  # [auth.policies]: public
    assert book["description"] == (
        "Today: **canary**, served by catalog, legacy; flag `catalog-books` (canary, 50%)."
    )
    # Legacy-only methods on the same path: one path, legacy's parameter typed from <int:...>.
    update = ops[("PUT", "/api/books/{book_id}")]
    assert update["operationId"] == "books.update_book"
    assert update["parameters"] == [
        {
            "name": "book_id",
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 0},
        }
    ]
    assert update["x-gateway"]["access"] == "roles: admin"
    # Any one of the gateway's credentials, in [auth] order, whichever side answers.
    assert update["security"] == [
        {"gateway_bearer": []},
        {"gateway_session": []},
        {"gateway_api_key": []},
    ]
    schemes = admin.get(DOCUMENT).json()["components"]["securitySchemes"]
    assert schemes == {
        "gateway_bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "gateway_session": {"type": "apiKey", "in": "cookie", "name": "session"},
        "gateway_api_key": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    }
    assert ops[("GET", "/api/me")]["x-gateway"]["access"] == "authenticated"
    assert update["x-gateway"]["state"] == "legacy"
    assert update["x-gateway"]["served_by"] == ["legacy"]
    assert update["x-gateway"]["services"] == []
    # New-only, unflagged: the service answers everyone.
    search = ops[("GET", "/api/books/search")]["x-gateway"]
    assert (search["state"], search["served_by"], search["legacy_endpoint"]) == (
        "new",
        ["catalog"],
        None,
    )
    # Shadow: legacy answers, accounts gets the copy.
    me = ops[("GET", "/api/me")]["x-gateway"]
    assert (me["state"], me["served_by"], me["shadow_copy_to"]) == (
        "shadow",
        ["legacy"],
        "accounts",
    )
    # The services' identical FastAPI components are one.
    schemas = admin.get(DOCUMENT).json()["components"]["schemas"]
    assert {"Book", "BookList", "Me", "HTTPValidationError", "ValidationError"} <= set(schemas)


def test_x_gateway_follows_flag_changes_at_once(admin: TestClient) -> None:
    def state(method: str, path: str) -> dict[str, Any]:
        extension: dict[str, Any] = operations(admin.get(DOCUMENT).json())[(method, path)][
            "x-gateway"
        ]
        return extension

    assert admin.put("/_gateway/api/flags/accounts-me", json={"mode": "new"}).status_code == 200
    me = state("GET", "/api/me")
    assert (me["state"], me["served_by"]) == ("new", ["accounts"])
    assert me["flag"]["source"] == "store"

    admin.put("/_gateway/api/flags/catalog-books", json={"percentage": 0})
    assert state("GET", "/api/books")["served_by"] == ["legacy"]
    admin.put("/_gateway/api/flags/catalog-books", json={"percentage": 100})
    assert state("GET", "/api/books")["served_by"] == ["catalog"]

    assert admin.put("/_gateway/api/kill-switch", json={"enabled": True}).status_code == 200
    books = state("GET", "/api/books")
    assert (books["served_by"], books["kill_switch"]) == (["legacy"], True)
    assert admin.get(DOCUMENT).json()["x-gateway"]["kill_switch"] is True
    # An unflagged route is not the kill switch's to move.
    assert state("GET", "/api/books/search")["served_by"] == ["catalog"]


def test_x_gateway_carries_the_rollout_of_the_operations_flag(admin: TestClient) -> None:
    def books() -> dict[str, Any]:
        return operations(admin.get(DOCUMENT).json())[("GET", "/api/books")]

    assert "rollout" not in books()["x-gateway"]
    started = admin.post("/_gateway/api/rollouts", json={"route": "GET /api/books"})
    assert started.status_code == 201, started.text
    operation = books()
    extension = operation["x-gateway"]
    assert extension["rollout"] == {
        "status": "running",
        "step": 1,
        "steps": [10, 50, 100],
        "current": 10,
    }
    assert (extension["state"], extension["flag"]["percentage"]) == ("canary", 10)
    assert "rollout running at step 1/3 (10%)" in operation["description"]
    # Every operation under the flag carries it; another flag's operations do not.
    document = operations(admin.get(DOCUMENT).json())
    assert document[("GET", "/api/books/{book_id}")]["x-gateway"]["rollout"]["status"] == "running"
    assert "rollout" not in document[("GET", "/api/me")]["x-gateway"]

    assert admin.post("/_gateway/api/rollouts/catalog-books/pause").status_code == 200
    assert books()["x-gateway"]["rollout"]["status"] == "paused"
    assert admin.post("/_gateway/api/rollouts/catalog-books/abort").status_code == 200
    extension = books()["x-gateway"]
    assert (extension["rollout"]["status"], extension["state"]) == ("aborted", "legacy")


def test_legacy_response_schema_is_inferred_from_recorded_samples(
    admin: TestClient, gateway: GatewayApp
) -> None:
    before = operations(admin.get(DOCUMENT).json())[("PUT", "/api/books/{book_id}")]
    assert list(before["responses"]) == ["default"]
    assert "requestBody" not in before

    file = sample_path(gateway.settings.record.dir, "PUT", "/api/books/{book_id:int}")
    book = {"id": 1, "title": "Dune", "author": "Frank Herbert", "year": 1965}
    error = {"error": {"status": 404, "message": "no such book"}, "request_id": "r1"}
    append_samples(
        file,
        [
            _sample("PUT", "/api/books/1", 200, book, request={"title": "Dune", "year": 1965}),
            _sample("PUT", "/api/books/2", 200, {**book, "id": 2, "year": None}),
            _sample("PUT", "/api/books/9", 404, error),
        ],
    )
    document = admin.get(DOCUMENT).json()  # the cached document is rebuilt: a file changed
    validate(document)
    after = operations(document)[("PUT", "/api/books/{book_id}")]
    ok = after["responses"]["200"]
    assert ok["description"] == "OK (inferred from 2 recorded samples)"
    assert ok["content"]["application/json"]["schema"] == {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "title": {"type": "string"},
            "author": {"type": "string"},
            "year": {"type": ["integer", "null"]},
        },
        "required": ["author", "id", "title", "year"],
    }
    missing = after["responses"]["404"]["content"]["application/json"]["schema"]
    assert missing["properties"]["error"]["required"] == ["message", "status"]
    assert after["requestBody"]["content"]["application/json"]["schema"]["required"] == [
        "title",
        "year",
    ]


def _sample(method: str, path: str, status: int, body: Any, *, request: Any = None) -> Sample:
    return Sample(
        route=f"{method} /api/books/{{book_id:int}}",
        request=RecordedRequest(
            method,
            path,
            headers=JSON if request is not None else (),
            body=Body(request, "json") if request is not None else Body(),
        ),
        response=RecordedResponse(status, headers=JSON, body=Body(body, "json")),
    )


# -- auth and the docs page -----------------------------------------------------------------------

GUARDED = [DOCUMENT, "/_gateway/docs", "/_gateway/docs/static/init.js"]


@pytest.mark.parametrize("path", GUARDED)
def test_anonymous_gets_401_and_a_non_admin_403_as_json(client: TestClient, path: str) -> None:
    anonymous = client.get(path, headers={"X-Request-ID": "anon-1"})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert anonymous.json() == {
        "error": {"status": 401, "message": anonymous.json()["error"]["message"]},
        "request_id": "anon-1",
    }
    client.post("/login", data={"username": "bob", "password": "builder"})
    refused = client.get(path, headers={"X-Request-ID": "bob-1"})
    assert refused.status_code == 403
    assert refused.json()["error"]["status"] == 403
    assert refused.json()["request_id"] == "bob-1"


def test_the_docs_page_loads_its_own_assets_under_a_strict_policy(admin: TestClient) -> None:
    page = admin.get("/_gateway/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert "unsafe-inline" not in policy
    assert "default-src 'none'" in policy
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts
    assert all('src="' in attributes and not body.strip() for attributes, body in scripts)
    assets = re.findall(r'(?:src|href)="(docs/static/[^"]+)"', page.text)
    assert {
        "docs/static/swagger-ui-bundle.js",
        "docs/static/init.js",
        "docs/static/swagger-ui.css",
    } <= set(assets)
    for asset in assets:
        answer = admin.get(f"/_gateway/{asset}")
        assert answer.status_code == 200, asset
        assert answer.headers["content-security-policy"] == policy
    init = admin.get("/_gateway/docs/static/init.js").text
    assert 'url: "openapi/app.json"' in init
    assert "validatorUrl: null" in init
    assert "SwaggerUIBundle" in admin.get("/_gateway/docs/static/swagger-ui-bundle.js").text
    assert "http" not in re.sub(r"<!doctype html>", "", page.text, flags=re.I)  # nothing remote


def test_an_unknown_asset_is_a_json_404(admin: TestClient) -> None:
    answer = admin.get("/_gateway/docs/static/../../gateway.toml")
    assert answer.status_code == 404
    assert admin.get("/_gateway/docs/static/redoc.standalone.js").status_code == 404
    missing = admin.get("/_gateway/docs/static/nothing.js", headers={"X-Request-ID": "nope-1"})
    assert missing.status_code == 404
    assert missing.json()["request_id"] == "nope-1"


# -- small apps of our own -------------------------------------------------------------------------


def _document(
    flask_app: Any, services: dict[str, Any] | None = None, samples: Path | None = None
) -> dict[str, Any]:
    flags = FlagRuntime(defaults={}, store=FlagStore(MemoryStorage()))
    return AppDocument(
        wsgi_app=flask_app,
        services=services or {},
        table=RouteTable([]),
        flags=flags,
        samples_dir=samples,
    ).render()


CONVERTERS = [
    ("<int:value>", {"type": "integer", "minimum": 0}),
    ("<int(signed=True):value>", {"type": "integer"}),
    ("<int(min=1, max=9):value>", {"type": "integer", "minimum": 1, "maximum": 9}),
    ("<float:value>", {"type": "number", "minimum": 0}),
    ("<float(signed=True):value>", {"type": "number"}),
    ("<uuid:value>", {"type": "string", "format": "uuid"}),
    ("<path:value>", {"type": "string"}),
    ("<value>", {"type": "string", "minLength": 1}),
    (
        "<string(minlength=2, maxlength=5):value>",
        {"type": "string", "minLength": 2, "maxLength": 5},
    ),
    ("<string(length=3):value>", {"type": "string", "minLength": 3, "maxLength": 3}),
    ("<any(red, blue):value>", {"type": "string", "enum": ["red", "blue"]}),
]


@pytest.mark.parametrize(("rule", "schema"), CONVERTERS)
def test_path_parameters_are_typed_from_the_werkzeug_converter(
    rule: str, schema: dict[str, Any]
) -> None:
    app = Flask(__name__)
    app.add_url_rule(f"/things/{rule}", "thing", lambda value: str(value))
    document = _document(app)
    validate(document)
    [parameter] = document["paths"]["/things/{value}"]["get"]["parameters"]
    assert parameter["schema"] == schema
    assert (parameter["in"], parameter["required"]) == ("path", True)


def test_docstrings_methods_and_endpoints_of_legacy_views() -> None:
    app = Flask(__name__)

    @app.route("/orders/<int:order_id>", methods=["GET", "DELETE"])
    def order(order_id: int) -> str:
        """Read or cancel one order.

        Cancelling refunds the payment.
        """
        return ""

    @app.post("/orders")
    def create_order() -> str:
        return ""

    ops = operations(_document(app))
    assert set(ops) == {
        ("GET", "/orders/{order_id}"),
        ("DELETE", "/orders/{order_id}"),
        ("POST", "/orders"),
        ("GET", "/static/{filename}"),
    }  # no HEAD, no OPTIONS
    read = ops[("GET", "/orders/{order_id}")]
    assert read["summary"] == "Read or cancel one order."
    # The docstring's rest, after the line saying who serves it (Swagger UI shows no x-gateway).
    assert read["description"] == (
        "Today: **legacy**, served by legacy.\n\nCancelling refunds the payment."
    )
    assert read["operationId"] == "order_GET"
    assert ops[("DELETE", "/orders/{order_id}")]["operationId"] == "order_DELETE"
    create = ops[("POST", "/orders")]
    assert (create["operationId"], create["summary"]) == ("create_order", "create_order")
    assert create["description"] == "Today: **legacy**, served by legacy."
    assert create["x-gateway"]["state"] == "legacy"
    assert [op.endpoint for op in legacy_operations(object())] == []  # not a Flask app


def test_component_name_clashes_are_renamed_per_service() -> None:
    # Two models that FastAPI names alike ("Book"), one per service.
    catalog_book_model = create_model("Book", title=(str, ...))
    shop_book_model = create_model("Book", title=(str, ...), price=(float, ...))
    catalog, shop = FastAPI(), FastAPI()

    @catalog.get("/books/{book_id}", response_model=catalog_book_model)
    async def catalog_book(book_id: int) -> Any:
        return {"title": ""}

    @shop.get("/offers/{offer_id}", response_model=shop_book_model)
    async def shop_book(offer_id: int) -> Any:
        return {"title": "", "price": 1}

    document = _document(Flask(__name__), {"catalog": catalog, "shop": shop})
    validate(document)
    schemas = document["components"]["schemas"]
    assert "Book" not in schemas
    assert set(schemas["catalog__Book"]["properties"]) == {"title"}
    assert set(schemas["shop__Book"]["properties"]) == {"title", "price"}
    assert "HTTPValidationError" in schemas  # the same in both: shared, not renamed
    ok = "200"
    book = document["paths"]["/books/{book_id}"]["get"]["responses"][ok]
    offer = document["paths"]["/offers/{offer_id}"]["get"]["responses"][ok]
    assert book["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/catalog__Book"
    }
    assert offer["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/shop__Book"
    }
    # A service route no configured route sends traffic to: unrouted.
    assert document["paths"]["/books/{book_id}"]["get"]["x-gateway"]["state"] == "unrouted"


def test_an_unreadable_samples_file_or_a_broken_service_schema_leaves_the_rest(
    tmp_path: Path,
) -> None:
    app = Flask(__name__)
    app.add_url_rule("/a", "a", lambda: "")
    app.add_url_rule("/b", "b", lambda: "")
    sample_path(tmp_path, "GET", "/a").write_text("not json\n")
    append_samples(
        sample_path(tmp_path, "GET", "/b"),
        [
            Sample(
                "GET /b",
                RecordedRequest("GET", "/b"),
                RecordedResponse(200, headers=JSON, body=Body([1], "json")),
            )
        ],
    )
    broken = FastAPI()

    @broken.get("/c")
    async def c() -> None:
        return None

    def fail() -> dict[str, Any]:
        raise RuntimeError("cannot render a model")

    broken.openapi = fail  # type: ignore[method-assign]
    with capture_logs() as logs:
        document = _document(app, {"broken": broken}, samples=tmp_path)
    validate(document)
    assert "/c" not in document["paths"]
    assert list(document["paths"]["/a"]["get"]["responses"]) == ["default"]
    assert document["paths"]["/b"]["get"]["responses"]["200"]["content"] == {
        "application/json": {"schema": {"type": "array", "items": {"type": "integer"}}}
    }
    events = {line["event"]: line for line in logs}
    assert events["openapi.samples_unreadable"]["file"].endswith("get-a.jsonl")
    assert events["openapi.service_schema_failed"]["service"] == "broken"


def _plan(flag: str | None, primary: str = "legacy") -> RoutePlan:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    return RoutePlan(
        template="/x",
        methods=frozenset({"GET"}),
        backend="svc",
        flag=flag,
        app=app,
        service=app,
        legacy=app,
        shadow=ShadowPlan(label="GET /x", primary=primary) if flag else None,
        label="GET /x",
    )


def _flags(mode: str, percentage: int = 0, kill_switch: bool = False) -> dict[str, Any]:
    spec = {"mode": mode, "percentage": percentage, "source": "store"}
    return {"kill_switch": kill_switch, "flags": {"f": spec}}


STATES = [
    (None, {}, "legacy.x", False, "legacy", ["legacy"]),
    (None, {}, None, False, "unrouted", []),
    (_plan(None), {}, "legacy.x", False, "new", ["svc"]),
    (_plan(None), {}, "legacy.x", True, "retired", ["svc"]),
    (_plan("f"), _flags("legacy"), "legacy.x", False, "legacy", ["legacy"]),
    (_plan("f"), _flags("shadow"), "legacy.x", False, "shadow", ["legacy"]),
    (_plan("f", "new"), _flags("shadow"), "legacy.x", False, "shadow", ["svc"]),
    (_plan("f"), _flags("canary", 0), "legacy.x", False, "canary", ["legacy"]),
    (_plan("f"), _flags("canary", 30), "legacy.x", False, "canary", ["svc", "legacy"]),
    (_plan("f"), _flags("canary", 100), "legacy.x", False, "canary", ["svc"]),
    (_plan("f"), _flags("new"), "legacy.x", False, "new", ["svc"]),
    (_plan("f"), _flags("new", kill_switch=True), "legacy.x", False, "new", ["legacy"]),
]


@pytest.mark.parametrize(("plan", "flags", "endpoint", "retired", "state", "served_by"), STATES)
def test_x_gateway_states(
    plan: RoutePlan | None,
    flags: dict[str, Any],
    endpoint: str | None,
    retired: bool,
    state: str,
    served_by: list[str],
) -> None:
    extension = x_gateway(plan, flags, legacy_endpoint=endpoint, services=(), retired=retired)
    assert (extension["state"], extension["served_by"]) == (state, served_by)


def test_retired_routes_come_from_the_settings_when_they_have_the_key() -> None:
    class Route:
        def __init__(self, path: str, retired: object = None) -> None:
            self.path, self.methods = path, ("GET", "PUT")
            if retired is not None:
                self.retired = retired

    routes = [Route("/a/{id:int}", {"endpoint": "a"}), Route("/b"), Route("/c", None)]
    assert retired_routes(routes) == {("/a/{}", "GET"), ("/a/{}", "PUT")}  # type: ignore[arg-type]


def test_other_methods_are_405_naming_get_and_head_answers_without_a_body(
    admin: TestClient,
) -> None:
    refused = admin.post(DOCUMENT, json={})
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD"
    assert refused.json()["error"]["status"] == 405
    head = admin.head("/_gateway/docs/static/init.js")
    assert head.status_code == 200
    assert head.content == b""
