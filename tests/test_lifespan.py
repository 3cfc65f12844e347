"""Service lifespans: run at start-up and shut-down, in order, once, with their state."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from gateway.app import GatewayApp, create_app
from gateway.errors import StartupError
from gateway.settings import load_settings

CONFIG = """
[legacy]
app = "sample_apps:create_flask"
threads = 2

[services.first]
app = "sample_apps:create_service"
options = {{ name = "first" }}

[services.second]
app = "{second}"
{second_options}

[[routes]]
path = "/items/{{item_id:int}}"
methods = ["GET"]
backend = "first"
"""


def build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, second: str, options: str = ""
) -> tuple[TestClient, Path]:
    events = tmp_path / "events"
    monkeypatch.setenv("SAMPLE_EVENTS", str(events))
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG.format(second=second, second_options=options))
    app = create_app(load_settings(config, {}))
    return TestClient(app, base_url="http://localhost"), events


def test_lifespans_run_in_order_and_state_reaches_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, events = build(
        tmp_path, monkeypatch, "sample_apps:create_service", 'options = { name = "second" }'
    )
    with client:
        assert events.read_text().split() == ["first:startup", "second:startup"]
        assert client.get("/_gateway/ready").status_code == 200
        response = client.get("/items/3")
        assert response.json() == {"id": 3, "side": "first", "greeting": "hello from first"}
        assert response.headers["x-gateway-backend"] == "first"
    assert events.read_text().split() == [
        "first:startup",
        "second:startup",
        "second:shutdown",
        "first:shutdown",
    ]


def test_failing_startup_stops_the_gateway_and_undoes_earlier_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, events = build(tmp_path, monkeypatch, "sample_apps:create_failing_service")
    with (
        pytest.raises(
            StartupError,
            match=r"service 'second' failed to start: RuntimeError: database unreachable$",
        ),
        client,
    ):
        pass
    assert events.read_text().split() == ["first:startup", "failing:startup", "first:shutdown"]


def test_app_without_lifespan_support_is_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, events = build(tmp_path, monkeypatch, "sample_apps:raw_asgi")
    with client:
        assert client.get("/_gateway/ready").json() == {"status": "ready"}
    assert events.read_text().split() == ["first:startup", "first:shutdown"]


def test_not_ready_before_startup_and_health_always(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = build(tmp_path, monkeypatch, "sample_apps:raw_asgi")
    # Without the context manager, no lifespan runs.
    assert client.get("/_gateway/health").json() == {"status": "ok"}
    ready = client.get("/_gateway/ready")
    assert ready.status_code == 503
    assert ready.json() == {"status": "starting"}
    # The rest of the gateway's surface is for admins only, even with no [auth] section.
    closed = client.get("/_gateway/nope")
    assert closed.status_code == 401
    assert closed.json()["request_id"] == closed.headers["x-request-id"]
    assert client.post("/_gateway/health").status_code == 405


def test_any_failure_during_startup_undoes_exactly_what_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only a service's StartupError: whatever fails, every component entered before it is
    left again (in reverse), and the server is told ``lifespan.startup.failed``."""
    events = tmp_path / "events"
    monkeypatch.setenv("SAMPLE_EVENTS", str(events))
    config = tmp_path / "gateway.toml"
    config.write_text(
        CONFIG.format(
            second="sample_apps:create_service", second_options='options = { name = "b" }'
        )
    )
    app = create_app(load_settings(config, {}))

    async def broken_start() -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(app.reports, "start", broken_start)
    sent: list[dict[str, object]] = []
    with capture_logs() as logs, pytest.raises(RuntimeError, match="disk on fire"):
        asyncio.run(run_lifespan(app, sent))
    assert sent == [{"type": "lifespan.startup.failed", "message": "RuntimeError: disk on fire"}]
    assert events.read_text().split() == [
        "first:startup",
        "b:startup",
        "b:shutdown",
        "first:shutdown",
    ]
    assert [e for e in logs if e["event"] == "gateway.startup_failed"] == [
        {
            "event": "gateway.startup_failed",
            "error": "RuntimeError: disk on fire",
            "log_level": "error",
        }
    ]
    assert app.state.ready is False
    with pytest.raises(RuntimeError, match="after shutdown"):  # the legacy pool was closed
        app.legacy._pool.submit(print)


async def run_lifespan(app: GatewayApp, sent: list[dict[str, object]]) -> None:
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> dict[str, object]:
        return next(messages)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
