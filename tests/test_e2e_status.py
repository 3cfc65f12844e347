"""End to end: ``gateway status`` against a real ``gateway serve`` (issue 13 point 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import GatewayProcess, demo_config, free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    # catalog-books on new for everyone, accounts-me in shadow: 3 + 2 routes on the new side.
    flags = {"catalog-books": {"mode": "new"}, "accounts-me": {"mode": "shadow"}}
    config = demo_config(tmp_path_factory.mktemp("status"), flags=flags)
    with GatewayProcess(config) as process:
        yield process


def token(gateway: GatewayProcess, username: str, password: str) -> str:
    response = httpx.post(
        f"{gateway.base_url}/api/token", json={"username": username, "password": password}
    )
    return str(response.json()["access_token"])


def status(
    gateway: GatewayProcess, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    config = str(Path(gateway.log_path).parent / "gateway.toml")
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "status", "--config", config, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def test_status_counts_routes_and_the_new_sides_share(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.base_url) as client:
        for _ in range(6):
            assert client.get("/api/books").headers["x-gateway-backend"] == "catalog"
        for _ in range(2):
            assert client.get("/").headers["x-gateway-backend"] == "legacy"
    admin = {"GW_ADMIN_TOKEN": token(gateway, "alice", "wonderland")}

    result = status(gateway, "--url", gateway.base_url, "--json", env=admin)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["url"] == gateway.base_url
    assert report["states"] == {"legacy": 11, "shadow": 1, "canary": 0, "new": 5, "retired": 0}
    assert report["kill_switch"] is False
    # The token request itself was a legacy request too: 6 new of 6 + 3 = 9.
    assert report["windows"]["5m"]["requests"] == 9
    assert report["share_new"]["5m"] == pytest.approx(6 / 9)
    assert report["share_new"]["24h"] == pytest.approx(6 / 9)

    screen = status(gateway, "--url", gateway.base_url, env=admin)
    assert screen.returncode == 0, screen.stderr
    lines = screen.stdout.splitlines()
    assert lines[0] == f"gateway {gateway.base_url}: 17 routes"
    assert any(line.split()[:3] == ["legacy", "only", "11"] for line in lines)
    assert any(line.split()[:2] == ["new", "5"] for line in lines)
    assert any(line.split()[:4] == ["last", "5", "min", "66.7%"] for line in lines)


def test_status_takes_the_url_from_the_config(gateway: GatewayProcess, tmp_path: Path) -> None:
    # No --url: server.host and server.port of the config (here overridden by the environment).
    env = {
        "GW_ADMIN_TOKEN": token(gateway, "alice", "wonderland"),
        "GATEWAY_SERVER__PORT": str(gateway.port),
    }
    result = status(gateway, "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["url"] == gateway.base_url


@pytest.mark.parametrize(
    ("who", "expected"),
    [(None, "401: authentication required"), ("bob", "403: ")],
)
def test_status_refused_without_an_admin(
    gateway: GatewayProcess, who: str | None, expected: str
) -> None:
    env = {"GW_ADMIN_TOKEN": token(gateway, "bob", "builder")} if who else {}
    result = status(gateway, "--url", gateway.base_url, env=env)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"answered {expected}" in result.stderr


def test_status_says_when_nothing_listens(gateway: GatewayProcess) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = status(gateway, "--url", url, "--token", "x")
    assert result.returncode == 1
    assert result.stderr.startswith(f"gateway status: cannot reach {url}: ")
