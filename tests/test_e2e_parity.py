"""End to end: record real traffic through ``gateway serve`` with ``gateway record``, then prove
(or disprove) parity with ``gateway parity`` and the pytest plugin, on a temporary copy of the
demo. The demo's accounts service adds ``/display_name`` on purpose: parity must find it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest
from demo_copy import record_while
from support import REPO, GatewayProcess, demo_config, needs_redis

from gateway.recording.samples import read_samples

pytestmark = pytest.mark.e2e

ROUTE = "GET /api/me"
IGNORE_DISPLAY_NAME = ('# ignore = ["/display_name"]', 'ignore = ["/display_name"]')


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **(extra or {})}


def gateway(
    config: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--config", str(config)],
        cwd=config.parent,
        env=_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def record_while_alice_calls(
    server: GatewayProcess, config: Path, count: int, env: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """Run ``gateway record ROUTE --samples count`` while a client signed in as alice calls
    the route, until the command ends; its status and output."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        login = client.post("/login", json={"username": "alice", "password": "wonderland"})
        assert login.status_code == 200

        def call(number: int) -> None:
            answer = client.get("/api/me", params={"n": number})
            assert answer.status_code == 200
            assert answer.json()["username"] == "alice"

        return record_while(config, ROUTE, count, call, env=_env(env), limit=60)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[GatewayProcess, Path]]:
    # The demo's own flag defaults: GET /api/me in shadow mode, legacy answers the client.
    config = demo_config(tmp_path, flags=None)
    with GatewayProcess(config, args=["--workers", "2"]) as server:
        yield server, config


def test_record_through_the_server_then_parity_finds_the_planted_difference(
    demo: tuple[GatewayProcess, Path], tmp_path: Path
) -> None:
    server, config = demo
    samples_file = tmp_path / "var" / "samples" / "get-api-me.jsonl"

    status, output = record_while_alice_calls(server, config, 3)

    assert status == 0, output
    assert f"recording the next 3 requests of {ROUTE} into {samples_file}" in output
    assert f"3 samples of GET /api/me in {samples_file}" in output
    # Two workers recorded into one file: the count is exact all the same.
    samples = read_samples(samples_file)
    assert len(samples) == 3
    assert {s.request.identity.subject for s in samples} == {"alice"}
    assert all(name != "cookie" for s in samples for name, _ in s.request.headers)
    assert "cookie" not in samples_file.read_text().lower()
    # The request is withdrawn: the workers stop recording.
    stored = json.loads((tmp_path / "var" / "flags.json").read_text())
    assert stored["recordings"] == {}

    parity = gateway(config, "parity", ROUTE)

    assert parity.returncode == 1, parity.stdout + parity.stderr
    assert parity.stdout.count("MISMATCH (legacy 200, accounts 200)") == 3
    assert '/display_name: added: legacy (absent), accounts "Alice"' in parity.stdout
    assert parity.stdout.rstrip().endswith("FAILED: 3 mismatch")

    # Accepted: a samples file whose legacy side already has the field...
    accepted = tmp_path / "accepted.jsonl"
    accepted.write_text(samples_file.read_text())
    with_rule = config.read_text().replace(*IGNORE_DISPLAY_NAME)
    # ...or the route's ignore rule: parity passes.
    config.write_text(with_rule)
    passed = gateway(config, "parity", ROUTE, "--samples", str(accepted))

    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert passed.stdout.rstrip().endswith("passed: 3 ok")


def test_the_pytest_plugin_runs_one_test_per_sample(
    demo: tuple[GatewayProcess, Path], tmp_path: Path
) -> None:
    server, config = demo
    status, output = record_while_alice_calls(server, config, 2)
    assert status == 0, output
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    command = [sys.executable, "-m", "pytest", "-p", "gateway.pytest_plugin", "--gateway-parity"]
    command += ["--gateway-config", str(config), "-p", "no:cacheprovider", "-rA"]

    failing = subprocess.run(
        command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120
    )
    config.write_text(config.read_text().replace(*IGNORE_DISPLAY_NAME))
    passing = subprocess.run(
        command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120
    )

    assert failing.returncode == 1, failing.stdout
    assert "FAILED ::parity[GET /api/me 1:/api/me?n=" in failing.stdout
    assert '/display_name: added: legacy (absent), accounts "Alice"' in failing.stdout
    assert "2 failed" in failing.stdout
    assert passing.returncode == 0, passing.stdout
    assert "2 passed" in passing.stdout


def test_record_gives_up_after_its_timeout_and_withdraws(tmp_path: Path) -> None:
    config = demo_config(tmp_path, flags=None)

    result = gateway(config, "record", ROUTE, "--samples", "2", "--timeout", "0.5")

    assert result.returncode == 1
    assert "only 0 of 2 samples after 0.5s: is the server running" in result.stderr
    assert json.loads((tmp_path / "var" / "flags.json").read_text())["recordings"] == {}


def test_record_refuses_an_unknown_route(tmp_path: Path) -> None:
    config = demo_config(tmp_path, flags=None)

    result = gateway(config, "record", "GET /api/mee", "--samples", "2")

    assert result.returncode == 2
    assert "no route 'GET /api/mee' in [[routes]]; did you mean 'GET /api/me'" in result.stderr


@needs_redis
def test_record_through_the_redis_flag_store(tmp_path: Path) -> None:
    key = f"gateway-test:{uuid.uuid4().hex}"
    env = {"GATEWAY_FLAGS__STORE": "redis", "GATEWAY_FLAGS__REDIS_KEY": key}
    config = demo_config(tmp_path, flags=None)
    try:
        with GatewayProcess(config, env=env) as server:
            status, output = record_while_alice_calls(server, config, 2, env=env)
    finally:
        import redis

        client = redis.Redis(host="127.0.0.1", port=6379)
        client.delete(key)
        client.close()

    assert status == 0, output
    assert len(read_samples(tmp_path / "var" / "samples" / "get-api-me.jsonl")) == 2
