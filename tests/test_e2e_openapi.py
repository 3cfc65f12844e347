"""The merged OpenAPI document and Swagger UI through a real ``gateway serve`` of the demo."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate
from support import GatewayProcess, demo_config

from gateway.recording.samples import (
    Body,
    RecordedRequest,
    RecordedResponse,
    Sample,
    append_samples,
    sample_path,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProcess, Path]]:
    folder = tmp_path_factory.mktemp("openapi")
    with GatewayProcess(demo_config(folder, flags=None)) as gateway:
        yield gateway, folder


@pytest.fixture(scope="module")
def admin(served: tuple[GatewayProcess, Path]) -> Iterator[httpx.Client]:
    gateway, _ = served
    token = httpx.post(
        f"{gateway.base_url}/api/token", json={"username": "alice", "password": "wonderland"}
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=gateway.base_url, headers=headers) as client:
        yield client


def test_the_document_is_served_valid_and_follows_the_flags(admin: httpx.Client) -> None:
    answer = admin.get("/_gateway/openapi/app.json")
    assert answer.status_code == 200
    document = answer.json()
    validate(document)
    books = document["paths"]["/api/books/{book_id}"]["get"]["x-gateway"]
    assert (books["state"], books["served_by"]) == ("canary", ["catalog", "legacy"])
    assert "/_gateway/routes" not in document["paths"]

    changed = admin.put("/_gateway/api/flags/catalog-books", json={"mode": "new"})
    assert changed.status_code == 200
    again = admin.get("/_gateway/openapi/app.json").json()
    books = again["paths"]["/api/books/{book_id}"]["get"]["x-gateway"]
    assert (books["state"], books["served_by"]) == ("new", ["catalog"])
    assert books["flag"]["source"] == "store"


def test_recorded_samples_show_up_as_response_schemas(
    admin: httpx.Client, served: tuple[GatewayProcess, Path]
) -> None:
    _, folder = served
    append_samples(
        sample_path(folder / "var" / "samples", "GET", "/admin/users"),
        [
            Sample(
                route="GET /admin/users",
                request=RecordedRequest("GET", "/admin/users"),
                response=RecordedResponse(
                    200,
                    headers=(("content-type", "application/json"),),
                    body=Body({"users": [{"username": "alice", "roles": ["admin"]}]}, "json"),
                ),
            )
        ],
    )
    users = admin.get("/_gateway/openapi/app.json").json()["paths"]["/admin/users"]["get"]
    schema = users["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["properties"]["users"]["items"]["required"] == ["roles", "username"]


def test_swagger_ui_loads_from_the_package_under_its_policy(admin: httpx.Client) -> None:
    page = admin.get("/_gateway/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert "unsafe-inline" not in policy
    assets = re.findall(r'(?:src|href)="(docs/static/[^"]+)"', page.text)
    kinds = {}
    for asset in assets:
        answer = admin.get(f"/_gateway/{asset}")
        assert answer.status_code == 200, asset
        assert answer.headers["content-security-policy"] == policy
        kinds[asset.rsplit("/", 1)[1]] = answer.headers["content-type"]
    assert kinds["swagger-ui-bundle.js"].startswith("text/javascript")
    assert kinds["init.js"].startswith("text/javascript")
    assert kinds["swagger-ui.css"].startswith("text/css")


def test_anonymous_callers_get_401(served: tuple[GatewayProcess, Path]) -> None:
    gateway, _ = served
    for path in ("/_gateway/openapi/app.json", "/_gateway/docs", "/_gateway/docs/static/init.js"):
        answer = httpx.get(f"{gateway.base_url}{path}")
        assert answer.status_code == 401
        assert answer.json()["error"]["status"] == 401
        assert answer.json()["request_id"] == answer.headers["x-request-id"]
