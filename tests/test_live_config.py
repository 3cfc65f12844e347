"""Live config reload in process: which changes apply live, the swap, and a rejected file."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send
from structlog.testing import capture_logs
from support import call, demo_config, http_scope

from gateway.app import GatewayApp, create_app
from gateway.errors import ConfigError
from gateway.live_config import ReloadOutcome, reload_config, split_live
from gateway.reload_control import LiveReload, WorkerStatus, pid_file_written, read_statuses
from gateway.rollout.commands import RolloutCommands
from gateway.rollout.state import RolloutState
from gateway.settings import Settings, load_settings

API_KEY = {"X-API-Key": "demo-reporting-key-not-a-secret"}  # reporting-bot, role "user"


def settings_with(config: Path, *replacements: tuple[str, str], extra: str = "") -> Settings:
    """The settings of ``config`` after these edits (the file is changed in place)."""
    text = config.read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    config.write_text(text + extra)
    return load_settings(config, {})


@pytest.mark.parametrize(
    ("replacements", "extra", "not_live"),
    [
        ((("port = 8000", "port = 9000"),), "", ("server.port",)),
        (
            (("workers = 1", "workers = 4"), ('host = "127.0.0.1"', 'host = "0.0.0.0"')),
            "",
            ("server.host", "server.workers"),
        ),
        ((("threads = 16", "threads = 4"),), "", ("legacy.threads",)),
        (
            (('app = "legacy_flask:create_app"', 'app = "legacy_flask:create_other"'),),
            "",
            ("legacy.app",),
        ),
        (
            (('app = "new_services.accounts:create_app"', 'app = "new_services.accounts:other"'),),
            "",
            ("services.accounts",),
        ),
        ((), '\n[services.orders]\napp = "new_services.orders:create_app"\n', ("services.orders",)),
        ((('level = "info"', 'level = "debug"'),), "", ("logging.level",)),
        ((("max_head_size = 32768", "max_head_size = 65536"),), "", ("limits.max_head_size",)),
        ((('store = "file"', 'store = "memory"'),), "", ("flags.store",)),
        ((("max_concurrent = 16", "max_concurrent = 4"),), "", ("shadow.max_concurrent",)),
        # Live: each of these is read by the request path only.
        ((("percentage = 50", "percentage = 10"),), "", ()),
        ((("max_body_size = 10485760", "max_body_size = 1024"),), "", ()),
        ((("backend_header = true", "backend_header = false"),), "", ()),
        ((('override_roles = ["qa"]', 'override_roles = ["qa", "ops"]'),), "", ()),
        (
            (
                (
                    'path = "/admin/users"\nroles = ["admin"]',
                    'path = "/admin/users"\nroles = ["ops"]',
                ),
            ),
            "",
            (),
        ),
        ((("timeout = 2.0", "timeout = 5.0"),), "", ()),
        # The rollout controller takes each reloaded plan (from its next decision).
        ((("hold = 60", "hold = 120"),), "", ()),
    ],
)
def test_split_names_what_only_a_restart_changes_and_keeps_it_as_running(
    tmp_path: Path,
    replacements: tuple[tuple[str, str], ...],
    extra: str,
    not_live: tuple[str, ...],
) -> None:
    config = demo_config(tmp_path)
    running = load_settings(config, {})
    new = settings_with(config, *replacements, extra=extra)
    effective, kept = split_live(running, new, running.services)
    assert kept == not_live
    for key in not_live:
        section, _, name = key.partition(".")
        if section.startswith("routes["):
            index = int(section.removeprefix("routes[").removesuffix("]"))
            assert getattr(effective.routes[index], name) == getattr(running.routes[index], name)
            continue
        running_section, effective_section = getattr(running, section), getattr(effective, section)
        if isinstance(running_section, dict):
            assert effective_section == running_section
        else:
            assert getattr(effective_section, name) == getattr(running_section, name)
    # Everything else is the new file's.
    assert effective.routes == new.routes
    assert effective.auth == new.auth
    assert effective.flag_defaults() == new.flag_defaults()
    assert effective.limits.max_body_size == new.limits.max_body_size
    assert effective.server.backend_header == new.server.backend_header


def test_a_route_for_a_service_that_is_not_running_is_rejected(tmp_path: Path) -> None:
    config = demo_config(tmp_path)
    running = load_settings(config, {})
    new = settings_with(
        config,
        extra='\n[services.orders]\napp = "new_services.catalog:create_app"\n'
        '\n[[routes]]\npath = "/api/orders"\nmethods = ["GET"]\nbackend = "orders"\n',
    )
    with pytest.raises(ConfigError) as caught:
        split_live(running, new, running.services)
    [problem] = caught.value.problems
    assert problem.startswith(f"{new.source}: routes[6].backend: service 'orders' is not running")
    assert "restart" in problem


def test_outcome_lines() -> None:
    assert ReloadOutcome(1, "applied").describe() == "reload: applied"
    assert (
        ReloadOutcome(2, "applied", not_applied_live=("server.port", "legacy.app")).describe()
        == "reload: applied; not applied live (restart needed): server.port, legacy.app"
    )
    assert ReloadOutcome(3, "rejected", problems=("f.toml: routes: bad",)).describe() == (
        "reload: rejected, the running config is kept: f.toml: routes: bad"
    )


@pytest.mark.anyio
async def test_swap_lets_a_request_in_flight_finish_on_the_old_path(tmp_path: Path) -> None:
    app = create_app(load_settings(demo_config(tmp_path), {}))
    started, release = asyncio.Event(), asyncio.Event()

    def answering(body: bytes, *, wait: bool) -> object:
        async def handler(scope: Scope, receive: Receive, send: Send) -> None:
            if wait:
                started.set()
                await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})

        return handler

    app.swap(dataclasses.replace(app.path, handler=answering(b"old", wait=True)))
    in_flight = asyncio.create_task(call(app, http_scope()))
    await started.wait()
    app.swap(dataclasses.replace(app.path, handler=answering(b"new", wait=False)))
    after = await call(app, http_scope())
    release.set()
    before = await in_flight
    assert (before.body, after.body) == (b"old", b"new")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[GatewayApp, TestClient, Path]]:
    config = demo_config(tmp_path)
    app = create_app(load_settings(config, {}))
    with TestClient(app, base_url="http://localhost") as client:
        yield app, client, config


def reload(app: GatewayApp, client: TestClient, generation: int = 1) -> ReloadOutcome:
    assert client.portal is not None
    return client.portal.call(reload_config, app, {}, generation)


def test_reload_applies_a_tightened_policy_and_a_new_default(
    running: tuple[GatewayApp, TestClient, Path],
) -> None:
    app, client, config = running
    assert client.get("/api/books/1").status_code == 200
    text = config.read_text().replace(
        'path = "/api/books/{book_id:int}"\nmethods = ["GET"]\naccess = "public"',
        'path = "/api/books/{book_id:int}"\nmethods = ["GET"]\nroles = ["admin"]',
    )
    config.write_text(text.replace("percentage = 50", "percentage = 7"))
    with capture_logs() as logs:
        outcome = reload(app, client)
    assert outcome == ReloadOutcome(1, "applied")
    assert client.get("/api/books/1").status_code == 401
    assert client.get("/api/books/1", headers=API_KEY).status_code == 403
    # The store holds catalog-books (demo_config): the store still wins over the new default.
    flags = app.flags.view()["flags"]
    assert flags["catalog-books"]["source"] == "store"
    [line] = [entry for entry in logs if entry["event"] == "config.reload"]
    assert line["result"] == "reload: applied"
    assert line["log_level"] == "info"


def test_a_bad_file_keeps_the_running_config_and_says_file_key_and_problem(
    running: tuple[GatewayApp, TestClient, Path],
) -> None:
    app, client, config = running
    path_before = app.path
    config.write_text(
        config.read_text().replace('methods = ["PUT"]\nbackend', "methods = []\nbackend")
    )
    with capture_logs() as logs:
        outcome = reload(app, client)
    assert outcome.outcome == "rejected"
    assert outcome.problems == (f"{config}: routes[5].methods: needs at least one method (got [])",)
    assert app.path is path_before
    assert client.get("/api/books/1").status_code == 200
    [line] = [entry for entry in logs if entry["event"] == "config.reload"]
    assert line["log_level"] == "error"
    assert f"{config}: routes[5].methods: needs at least one method" in line["result"]


def test_unchanged_routes_keep_their_breaker_and_changed_ones_get_a_new_one(
    running: tuple[GatewayApp, TestClient, Path],
) -> None:
    app, client, config = running
    old = {plan.label: plan for plan in app.path.plans}
    # Only the second catalog route's breaker changes.
    text = config.read_text()
    second = text.index('path = "/api/books/{book_id:int}"\nmethods = ["GET"]\nbackend')
    text = text[:second] + text[second:].replace("failures = 5", "failures = 9", 1)
    config.write_text(text)
    assert reload(app, client).outcome == "applied"
    new = {plan.label: plan for plan in app.path.plans}
    assert new["GET /api/books"].breaker is old["GET /api/books"].breaker
    changed = new["GET /api/books/{book_id:int}"].breaker
    assert changed is not None
    assert changed is not old["GET /api/books/{book_id:int}"].breaker
    assert changed._threshold == 9
    # The worker report follows the breakers the routes have now.
    assert {b.label for b in app.path.breakers} == {
        "GET /api/books",
        "GET /api/books/{book_id:int}",
    }


def test_a_new_route_is_served_by_its_service_after_reload(tmp_path: Path) -> None:
    text = demo_config(tmp_path).read_text()
    search = '[[routes]]\npath = "/api/books/search"\nmethods = ["GET"]\nbackend = "catalog"\n'
    assert search in text
    config = tmp_path / "gateway.toml"
    config.write_text(text.replace(search, ""))
    app = create_app(load_settings(config, {}))
    with TestClient(app, base_url="http://localhost") as client:
        assert client.get("/api/books/search?q=a").headers["x-gateway-backend"] == "legacy"
        config.write_text(text)
        assert reload(app, client).outcome == "applied"
        response = client.get("/api/books/search?q=a")
        assert response.status_code == 200
        assert response.headers["x-gateway-backend"] == "catalog"
        assert [row.path for row in app.inventory.rows if row.served_by == "catalog"].count(
            "/api/books/search"
        ) == 1


@pytest.mark.anyio
async def test_a_worker_reloads_on_sighup_and_keeps_its_status_file(tmp_path: Path) -> None:
    config = demo_config(tmp_path)
    app = create_app(load_settings(config, {}))
    pid_file = tmp_path / "run" / "gateway.pid"
    status_file = tmp_path / "run" / "gateway.workers" / f"{os.getpid()}.json"
    previous = signal.getsignal(signal.SIGHUP)
    try:
        live = LiveReload(app, pid_file, {})
        async with live:
            status = WorkerStatus.read(status_file)
            assert status is not None
            assert (status.generation, status.outcome, status.config) == (0, "started", str(config))
            assert read_statuses(pid_file, os.getpid()) == {os.getpid(): status}

            config.write_text(config.read_text().replace("port = 8000", "port = 8001"))
            os.kill(os.getpid(), signal.SIGHUP)
            status = await wait_for_generation(status_file, 1)
            assert status.outcome == "applied"
            assert status.not_applied_live == ("server.port",)
            assert status.result == (
                "reload: applied; not applied live (restart needed): server.port"
            )

            # Two requests before the first reload starts read the same file: one reload.
            live.request()
            live.request()
            assert live._task is not None
            await live._task  # every reload it was asked for has run
            current = WorkerStatus.read(status_file)
            assert current is not None
            assert current.generation == 2

            config.write_text(config.read_text() + "\n[nonsense]\n")
            os.kill(os.getpid(), signal.SIGHUP)
            status = await wait_for_generation(status_file, 3)
            assert status.outcome == "rejected"
            assert status.problems == (f"{config}: nonsense: unknown key",)
        assert not status_file.exists()
        # Stopped: a late SIGHUP must not kill the process.
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


async def wait_for_generation(path: Path, generation: int) -> WorkerStatus:
    async with asyncio.timeout(10):
        while True:
            status = WorkerStatus.read(path)
            if status is not None and status.generation >= generation:
                return status
            await asyncio.sleep(0.02)


def test_a_pid_file_that_cannot_be_written_is_a_warning_not_a_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    pid_file = blocker / "run" / "gateway.pid"  # its folder cannot be made
    with capture_logs() as logs, pid_file_written(pid_file) as written:
        assert written == pid_file
    [warning] = [entry for entry in logs if entry["event"] == "reload.pid_file_not_written"]
    assert warning["log_level"] == "warning"
    assert str(pid_file) in warning["reason"]


def test_the_pid_file_lives_while_the_server_does(tmp_path: Path) -> None:
    pid_file = tmp_path / "run" / "gateway.pid"
    with pid_file_written(pid_file):
        assert pid_file.read_text() == f"{os.getpid()}\n"
    assert not pid_file.exists()
    # Another server took the file over meanwhile: it stays theirs.
    with pid_file_written(pid_file):
        pid_file.write_text("1\n")
    assert pid_file.read_text() == "1\n"


def test_a_reloaded_rollout_plan_applies_from_the_next_decision(
    running: tuple[GatewayApp, TestClient, Path],
) -> None:
    """A running rollout keeps its step and steps; the next analysis uses the new thresholds,
    and a rollout started after the reload takes the new steps."""
    app, client, config = running
    assert client.portal is not None
    commands = RolloutCommands(app.settings, app.flags)
    client.portal.call(partial(commands.start, "GET /api/books", actor="test"))

    def decide() -> RolloutState:
        assert client.portal is not None
        assert app.rollouts is not None
        client.portal.call(app.rollouts.decide, time.time())
        return app.flags.state.rollouts["catalog-books"]

    assert "each side needs 50" in str(decide().last_verdict)
    config.write_text(
        config.read_text()
        .replace("steps = [10, 50, 100]", "steps = [25, 100]")
        .replace("min_requests = 50", "min_requests = 7")
    )
    assert reload(app, client) == ReloadOutcome(1, "applied")
    rollout = decide()
    assert "each side needs 7" in str(rollout.last_verdict)
    assert (rollout.steps, rollout.step, rollout.status) == ((10, 50, 100), 0, "running")
    assert app.flags.view()["flags"]["catalog-books"]["percentage"] == 10

    # A plan the file gets wrong is rejected: the controller keeps deciding with the last one.
    config.write_text(config.read_text().replace("steps = [25, 100]", "steps = [25, 50]"))
    rejected = reload(app, client, generation=2)
    assert rejected.outcome == "rejected"
    assert "routes[0].rollout.steps" in rejected.problems[0]
    assert "each side needs 7" in str(decide().last_verdict)

    # The next rollout takes the reloaded steps (the commands of the reloaded request path).
    token = client.post("/api/token", json={"username": "alice", "password": "wonderland"})
    alice = {"Authorization": f"Bearer {token.json()['access_token']}"}
    client.post("/_gateway/api/rollouts/catalog-books/abort", headers=alice).raise_for_status()
    started = client.post("/_gateway/api/rollouts", json={"route": "GET /api/books"}, headers=alice)
    assert started.status_code == 201, started.text
    assert started.json()["steps"] == [25, 100]
