"""Flags in the request path and through the admin API, in process (memory store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs
from support import demo_config

from gateway.app import create_app
from gateway.flags.evaluate import bucket
from gateway.settings import load_settings


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    config = demo_config(tmp_path, flags=None)
    app = create_app(load_settings(config, {"GATEWAY_FLAGS__STORE": "memory"}))
    with TestClient(app, base_url="http://localhost", client=("127.0.0.1", 50000)) as test_client:
        # What the dashboard's script sends with a change signed by the session cookie; a
        # cross-site form cannot (gateway.csrf, tests/test_dashboard.py).
        test_client.headers["X-Gateway-CSRF"] = "1"
        yield test_client


def login(client: TestClient, username: str, password: str) -> None:
    assert (
        client.post("/login", data={"username": username, "password": password}).status_code == 200
    )


def test_demo_canary_splits_by_user_and_says_why(client: TestClient) -> None:
    # The demo ships catalog-books at 50%: alice's bucket is 50 (new), bob's 85 (legacy).
    assert bucket("catalog-books", "alice") == 50
    assert bucket("catalog-books", "bob") == 85
    login(client, "alice", "wonderland")
    with capture_logs() as logs:
        for _ in range(5):  # sticky: the same user, the same side, every time
            assert client.get("/api/books").headers["x-gateway-backend"] == "catalog"
    line = [log for log in logs if log["event"] == "request"][-1]
    assert (line["flag"], line["decision"], line["reason"], line["bucket"]) == (
        "catalog-books",
        "new",
        "split",
        50,
    )
    client.post("/logout")
    login(client, "bob", "builder")
    for _ in range(5):
        assert client.get("/api/books/1").headers["x-gateway-backend"] == "legacy"


def test_admin_api_changes_flags_live(client: TestClient) -> None:
    login(client, "alice", "wonderland")
    listing = client.get("/_gateway/api/flags").json()
    assert listing["flags"]["catalog-books"]["percentage"] == 50
    assert listing["flags"]["catalog-books"]["source"] == "default"

    client.post("/logout")
    login(client, "bob", "builder")
    assert client.get("/api/books").headers["x-gateway-backend"] == "legacy"
    assert (
        client.put("/_gateway/api/flags/catalog-books", json={"percentage": 100}).status_code == 403
    )

    client.post("/logout")
    login(client, "alice", "wonderland")
    with capture_logs() as logs:
        changed = client.put("/_gateway/api/flags/catalog-books", json={"percentage": 100})
    assert changed.status_code == 200, changed.text
    assert changed.json()["percentage"] == 100
    assert changed.json()["source"] == "store"
    [audit] = [log for log in logs if log["event"] == "flags.changed"]
    assert audit["actor"] == "alice (session)"
    assert audit["old"]["percentage"] == 50
    assert audit["new"]["percentage"] == 100

    client.post("/logout")
    login(client, "bob", "builder")
    assert client.get("/api/books").headers["x-gateway-backend"] == "catalog"


def test_kill_switch_sends_everything_to_legacy_and_lifts(client: TestClient) -> None:
    login(client, "alice", "wonderland")
    client.put("/_gateway/api/flags/accounts-me", json={"mode": "new"})
    assert client.get("/api/me").headers["x-gateway-backend"] == "accounts"
    assert client.put("/_gateway/api/kill-switch", json={"enabled": True}).json() == {
        "enabled": True
    }
    with capture_logs() as logs:
        assert client.get("/api/me").headers["x-gateway-backend"] == "legacy"
        assert client.get("/api/books").headers["x-gateway-backend"] == "legacy"
    assert {log.get("reason") for log in logs if log["event"] == "request"} == {"kill-switch"}
    # Unflagged migrated routes are not flags: POST /api/books stays on catalog.
    created = client.post(
        "/api/books", json={"title": "Kindred", "author": "Octavia E. Butler", "year": 1979}
    )
    assert created.headers["x-gateway-backend"] == "catalog"
    assert client.get("/_gateway/api/kill-switch").json() == {"enabled": True}
    client.put("/_gateway/api/kill-switch", json={"enabled": False})
    assert client.get("/api/me").headers["x-gateway-backend"] == "accounts"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("PUT", "/_gateway/api/flags/nope", {"mode": "new"}, 404, "unknown flag 'nope'"),
        ("PUT", "/_gateway/api/flags/catalog-books", {"percentage": 101}, 400, "percentage"),
        ("PUT", "/_gateway/api/flags/catalog-books", {"mode": "sideways"}, 400, "mode"),
        (
            "PUT",
            "/_gateway/api/flags/catalog-books",
            {"colour": "red"},
            400,
            "unknown flag fields: colour",
        ),
        ("PUT", "/_gateway/api/flags/catalog-books", ["new"], 400, "JSON object"),
        ("PUT", "/_gateway/api/kill-switch", {"enabled": "yes"}, 400, '{"enabled": true}'),
        ("POST", "/_gateway/api/flags/catalog-books", None, 405, "method not allowed"),
        ("DELETE", "/_gateway/api/flags/nope", None, 404, "unknown flag 'nope'"),
        ("POST", "/_gateway/api/flags", None, 405, "method not allowed"),
        ("GET", "/_gateway/api/nothing", None, 404, "no such gateway endpoint"),
    ],
)
def test_admin_api_bad_input(
    client: TestClient, method: str, path: str, body: object, status: int, message: str
) -> None:
    login(client, "alice", "wonderland")
    response = client.request(method, path, json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert message in error["error"]["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    # Nothing changed.
    assert client.get("/_gateway/api/flags").json()["version"] == 0


def test_admin_api_rejects_invalid_json(client: TestClient) -> None:
    login(client, "alice", "wonderland")
    response = client.put(
        "/_gateway/api/flags/catalog-books",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "the body is not valid JSON"


def test_admin_api_needs_an_admin(client: TestClient) -> None:
    assert client.get("/_gateway/api/flags").status_code == 401
    login(client, "bob", "builder")
    assert client.get("/_gateway/api/flags").status_code == 403
