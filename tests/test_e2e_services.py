"""Real FastAPI services, written as FastAPI's documentation writes them, served unchanged
through a real ``gateway serve``: their docs, CORS preflights, explicit HEAD handlers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hardening import sample_env
from support import GatewayProcess

pytestmark = pytest.mark.e2e

CONFIG = """
[legacy]
app = "sample_apps:create_flask"

[services.things]
app = "sample_apps:create_cors_service"

[[routes]]
path = "/things/{thing_id:int}"
methods = ["GET", "HEAD", "OPTIONS"]
backend = "things"

# The service's own documentation: routes hidden from its schema are routes all the same.
[[routes]]
path = "/docs"
methods = ["GET"]
backend = "things"

[[routes]]
path = "/openapi.json"
methods = ["GET"]
backend = "things"
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp_path: Path = tmp_path_factory.mktemp("services")
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG)
    with GatewayProcess(config, env=sample_env(tmp_path)) as process:
        yield process


def test_a_services_own_docs_are_reachable(gateway: GatewayProcess) -> None:
    docs = httpx.get(f"{gateway.base_url}/docs")
    assert docs.status_code == 200
    assert docs.headers["x-gateway-backend"] == "things"
    assert "swagger-ui" in docs.text
    schema = httpx.get(f"{gateway.base_url}/openapi.json")
    assert schema.json()["info"]["title"] == "cors-service"
    assert "/things/{thing_id}" in schema.json()["paths"]


def test_a_cors_preflight_is_answered_by_the_services_middleware(gateway: GatewayProcess) -> None:
    preflight = httpx.options(
        f"{gateway.base_url}/things/7",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "PUT"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["x-gateway-backend"] == "things"
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "PUT" in preflight.headers["access-control-allow-methods"]


def test_an_explicit_head_handler_runs(gateway: GatewayProcess) -> None:
    head = httpx.head(f"{gateway.base_url}/things/7")
    assert head.status_code == 200
    assert head.headers["x-head"] == "explicit 7"
    assert head.content == b""


def test_the_inventory_lists_the_services_hidden_routes(gateway: GatewayProcess) -> None:
    from gateway.app import create_app
    from gateway.settings import load_settings

    config = Path(gateway.log_path).parent / "gateway.toml"
    app = create_app(load_settings(config, {}))
    paths = {row.path: row for row in app.inventory.rows}
    assert paths["/docs"].served_by == "things"
    assert paths["/redoc"].status == "unrouted"  # the service has it; no route sends it there


def test_the_other_trailing_slash_spelling_reaches_the_service_and_is_redirected(
    tmp_path: Path,
) -> None:
    """``/status`` for a service's ``/status/``: Flask has no such rule (it would answer 404),
    so the service gets it and redirects, as FastAPI does on its own."""
    config = tmp_path / "gateway.toml"
    config.write_text(
        CONFIG + '[[routes]]\npath = "/status/"\nmethods = ["GET"]\nbackend = "things"\n'
    )
    with GatewayProcess(config, env=sample_env(tmp_path)) as process:
        response = httpx.get(f"{process.base_url}/status", follow_redirects=False)
        assert response.headers["x-gateway-backend"] == "things"
        assert response.status_code == 307
        assert response.headers["location"].endswith("/status/")
        followed = httpx.get(f"{process.base_url}/status", follow_redirects=True)
        assert followed.json() == {"status": "ok"}
        # A path Flask does serve stays Flask's, whatever its other spelling.
        assert httpx.get(f"{process.base_url}/hello").headers["x-gateway-backend"] == "legacy"


@pytest.mark.parametrize(("method", "ok"), [("GET", True), ("PUT", False)])
def test_routing_the_other_spelling_passes_the_check_when_the_service_answers_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, ok: bool
) -> None:
    """The service redirects ``GET /status`` to its ``/status/``, so routing that spelling to it
    is no mistake; it has no ``PUT`` on either spelling, so that one is."""
    from gateway.app import create_app
    from gateway.errors import ConfigError
    from gateway.settings import load_settings

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    config = tmp_path / "gateway.toml"
    config.write_text(
        CONFIG + f'[[routes]]\npath = "/status"\nmethods = ["{method}"]\nbackend = "things"\n'
    )
    if ok:
        create_app(load_settings(config, {}))
        return
    with pytest.raises(ConfigError, match=r"does not implement PUT /status"):
        create_app(load_settings(config, {}))
