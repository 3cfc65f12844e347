"""Security findings from outside testing, each replayed over raw sockets against a real
``gateway serve`` running the demo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hardening import raw_exchange
from support import GatewayProcess, demo_config

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp_path: Path = tmp_path_factory.mktemp("security")
    with GatewayProcess(demo_config(tmp_path)) as gateway:
        yield gateway


def token(gateway: GatewayProcess, username: str, password: str) -> str:
    response = httpx.post(
        f"{gateway.base_url}/api/token", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.mark.parametrize("digit", ["%D9%A1", "%EF%BC%91", "%E0%A5%A7"])  # ١ １ १
def test_unicode_digits_do_not_dodge_the_admin_policy(demo: GatewayProcess, digit: str) -> None:
    """Werkzeug's ``int`` reads any decimal digit: ``PUT /api/books/١`` is book 1 to Flask, so the
    gateway must apply book 1's policy (admin), not the default one."""
    bob = token(demo, "bob", "builder")
    response = raw_exchange(
        demo.port,
        (
            f"PUT /api/books/{digit} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {bob}\r\nContent-Type: application/json\r\n"
            'Content-Length: 15\r\nConnection: close\r\n\r\n{"title":"pwn"}'
        ).encode(),
    )
    assert response.status == 403, response.raw[:300]
    assert response.headers["x-gateway-backend"] == "gateway"
    assert response.json()["error"]["message"] == "missing required role: admin"


def test_unicode_digits_follow_the_routes_flag(demo: GatewayProcess) -> None:
    """The flag at 100% sends ``/api/books/{id}`` to the catalog: so does its Unicode spelling
    (which the catalog, reading ASCII numbers only, refuses), never silently to legacy."""
    response = raw_exchange(
        demo.port,
        b"GET /api/books/%D9%A1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    assert response.headers["x-gateway-backend"] == "catalog"
    assert response.status in (404, 422), response.raw[:300]
