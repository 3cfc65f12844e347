"""schemathesis against the gateway's own endpoints, on a real server, as an admin, with the
OpenAPI document FastAPI generates for them (``AdminApp.openapi``), which the server serves at
``/_gateway/openapi.json``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from support import GatewayProcess, demo_config

from gateway.admin import AdminApp, GatewayState
from gateway.flags.runtime import FlagRuntime
from gateway.flags.stores import FlagStore
from gateway.inventory import Inventory
from gateway.metrics import Metrics
from gateway.rollout.api import rollout_router
from gateway.rollout.commands import RolloutCommands
from gateway.settings import LegacySettings, Settings
from gateway.storage.memory import MemoryStorage


def generated_document() -> dict[str, Any]:
    """What any gateway serves (metrics on, the default): the document depends on the
    endpoints, not on their data."""
    flags = FlagRuntime(defaults={}, store=FlagStore(MemoryStorage()))
    settings = Settings(legacy=LegacySettings(app="legacy_flask:create_app"))
    admin = AdminApp(
        state=GatewayState(),
        inventory=Inventory(rows=(), legacy_routes=(), plans=(), service_methods={}),
        flags=flags,
        routers=[rollout_router(RolloutCommands(settings, flags), flags)],
        metrics=Metrics(),
    )
    return admin.openapi()


# From the app, not from the server: schemathesis's lazy loader (pytest.from_fixture) reads a
# private pytest attribute that pytest 9 no longer has. The first test checks that the server
# serves this same document.
DOCUMENT = generated_document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    with GatewayProcess(demo_config(tmp_path_factory.mktemp("schema"))) as gateway:
        token = httpx.post(
            f"{gateway.base_url}/api/token", json={"username": "alice", "password": "wonderland"}
        ).json()["access_token"]
        yield gateway.base_url, {"Authorization": f"Bearer {token}"}


@pytest.mark.e2e
def test_the_served_document_is_generated(admin: tuple[str, dict[str, str]]) -> None:
    base_url, headers = admin
    served = httpx.get(f"{base_url}/_gateway/openapi.json", headers=headers)
    assert served.status_code == 200
    assert served.headers["cache-control"] == "no-store"
    assert served.json() == DOCUMENT
    assert DOCUMENT["openapi"].startswith("3.1")  # FastAPI's
    assert "/_gateway/api/flags/{name}" in DOCUMENT["paths"]
    # The demo's access policies want a signed-in caller for it (default_access).
    assert httpx.get(f"{base_url}/_gateway/openapi.json").status_code == 401


@pytest.mark.e2e
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_admin_api_conforms_to_its_schema_and_never_fails(
    case: schemathesis.Case, admin: tuple[str, dict[str, str]]
) -> None:
    base_url, headers = admin
    # Every check schemathesis has: no 5xx, documented status codes, content types, headers
    # and response bodies that validate against the schema.
    case.call_and_validate(base_url=base_url, headers=headers)
