"""schemathesis against the gateway's own endpoints, described by ``gateway.admin_openapi``
and served at ``/_gateway/openapi.json``, on a real server, as an admin."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from support import GatewayProcess, demo_config

from gateway.admin_openapi import ADMIN_OPENAPI

schema = schemathesis.openapi.from_dict(ADMIN_OPENAPI)


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    with GatewayProcess(demo_config(tmp_path_factory.mktemp("schema"))) as gateway:
        token = httpx.post(
            f"{gateway.base_url}/api/token", json={"username": "alice", "password": "wonderland"}
        ).json()["access_token"]
        yield gateway.base_url, {"Authorization": f"Bearer {token}"}


@pytest.mark.e2e
def test_the_served_schema_is_the_documented_one(admin: tuple[str, dict[str, str]]) -> None:
    base_url, headers = admin
    served = httpx.get(f"{base_url}/_gateway/openapi.json", headers=headers)
    assert served.status_code == 200
    assert served.json() == ADMIN_OPENAPI
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
