"""An OpenFeature provider deciding flagged routes, in process and through ``gateway serve``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs
from support import GatewayProcess, demo_config

from gateway.app import create_app
from gateway.settings import load_settings

TESTS = str(Path(__file__).resolve().parent)
PROVIDER = {"GATEWAY_FLAGS__OPENFEATURE_PROVIDER": "sample_apps:openfeature_provider"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    env = {**PROVIDER, "GATEWAY_FLAGS__STORE": "memory"}
    app = create_app(load_settings(demo_config(tmp_path, flags=None), env))
    with TestClient(app, base_url="http://localhost") as test_client:
        # A change signed by the session cookie carries the dashboard's header (gateway.csrf).
        test_client.headers["X-Gateway-CSRF"] = "1"
        yield test_client


def login(client: TestClient | httpx.Client, username: str, password: str) -> None:
    assert (
        client.post("/login", data={"username": username, "password": password}).status_code == 200
    )


def test_the_provider_decides_with_the_verified_identity(client: TestClient) -> None:
    login(client, "alice", "wonderland")
    with capture_logs() as logs:
        assert client.get("/api/books").headers["x-gateway-backend"] == "catalog"
    line = [log for log in logs if log["event"] == "request"][-1]
    assert (line["flag"], line["decision"], line["reason"]) == ("catalog-books", "new", "provider")
    assert line["provider_reason"] == "TARGETING_MATCH"
    client.post("/logout")
    login(client, "bob", "builder")
    assert client.get("/api/books").headers["x-gateway-backend"] == "legacy"
    assert client.get("/api/me").headers["x-gateway-backend"] == "accounts"  # static "new"


def test_kill_switch_still_wins_over_the_provider(client: TestClient) -> None:
    login(client, "alice", "wonderland")
    client.put("/_gateway/api/kill-switch", json={"enabled": True})
    with capture_logs() as logs:
        assert client.get("/api/books").headers["x-gateway-backend"] == "legacy"
    assert [log["reason"] for log in logs if log["event"] == "request"] == ["kill-switch"]


def test_provider_through_a_real_server(tmp_path: Path) -> None:
    env = {**PROVIDER, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with GatewayProcess(demo_config(tmp_path, flags=None), env=env) as gateway:
        with httpx.Client(base_url=gateway.base_url) as http:
            login(http, "alice", "wonderland")
            assert http.get("/api/books").headers["x-gateway-backend"] == "catalog"
        with httpx.Client(base_url=gateway.base_url) as http:
            login(http, "bob", "builder")
            assert http.get("/api/books").headers["x-gateway-backend"] == "legacy"
