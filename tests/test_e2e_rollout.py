"""Rollouts through real ``gateway serve`` processes: a healthy new side is advanced step by
step to 100%; a failing or slow one is rolled back to legacy within an analysis interval, with
the reason in ``gateway rollout status`` and the audit line. Several hosts sharing Redis: each
step reaches all of them within a second, and killing the lease holder neither stalls the
rollout nor advances it twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import GatewayProcess, demo_config, eventually, needs_redis, seconds_until

from legacy_flask import DEMO_JWT_SECRET
from legacy_flask.tokens import issue_token

TESTS = Path(__file__).resolve().parent
pytestmark = pytest.mark.e2e

ROUTES = """
[services.flaky]
app = "rollout_apps:create_app"
[services.flaky.options]
mode_file = "{mode_file}"

[[routes]]
path = "/api/books"
methods = ["GET"]
backend = "flaky"
flag = {{ name = "catalog-books", mode = "canary", percentage = 50 }}
[routes.rollout]
steps = [10, 50, 100]
hold = {hold}
interval = 0.5
min_requests = 20
"""

#: Sticky canaries bucket by user: many users, so every step has both sides.
TOKENS = [issue_token(f"user-{n}", ["user"], DEMO_JWT_SECRET) for n in range(100)]


def _env() -> dict[str, str]:
    return {"PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _config(tmp_path: Path, extra: str = "", *, hold: float = 1.5) -> Path:
    mode_file = tmp_path / "mode"
    mode_file.write_text("ok")
    return demo_config(
        tmp_path,
        routes=ROUTES.format(mode_file=mode_file, hold=hold),
        extra=extra,
        flags={"catalog-books": {"mode": "legacy"}},
    )


def rollout(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``gateway rollout ARGS`` as an operator types it."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "rollout", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=config.parent,
        env={**os.environ, **(env or _env())},
        timeout=30,
    )


def status(config: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = rollout(config, "status", "--json", env=env)
    assert done.returncode == 0, done.stderr
    rollouts: list[dict[str, Any]] = json.loads(done.stdout)["rollouts"]
    return rollouts[0]


@contextmanager
def traffic(*base_urls: str) -> Iterator[dict[str, Any]]:
    """A client loop over every base URL until the block ends: counts by answering side and
    every failed request (a transport error or a 5xx the client saw)."""
    seen: dict[str, Any] = {"sides": {}, "failures": [], "requests": 0}
    stop = threading.Event()

    def loop() -> None:
        with httpx.Client(timeout=5) as client:
            n = 0
            while not stop.is_set():
                base = base_urls[n % len(base_urls)]
                token = TOKENS[n % len(TOKENS)]
                n += 1
                try:
                    answer = client.get(
                        f"{base}/api/books", headers={"Authorization": f"Bearer {token}"}
                    )
                except httpx.HTTPError as exc:
                    seen["failures"].append(repr(exc))
                    continue
                side = answer.headers.get("x-gateway-backend", "?")
                seen["sides"][side] = seen["sides"].get(side, 0) + 1
                seen["requests"] += 1
                if answer.status_code >= 500:
                    seen["failures"].append(answer.status_code)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(10)


def _audit(gateway: GatewayProcess) -> list[dict[str, Any]]:
    return [
        e
        for e in gateway.log_events()
        if e["event"] == "flags.changed" and str(e.get("actor", "")).startswith("rollout")
    ]


def test_a_healthy_new_side_is_advanced_step_by_step_to_new(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with GatewayProcess(config, env=_env()) as gateway, traffic(gateway.base_url) as seen:
        started = rollout(config, "start", "GET /api/books")
        assert started.returncode == 0, started.stderr
        assert "catalog-books (GET /api/books): running at step 1/3 (10%" in started.stdout

        done = eventually(lambda: status(config)["status"] == "completed", limit=60, interval=0.3)

        assert done, status(config)
        percentages = [e["new"]["percentage"] for e in _audit(gateway)]
        assert percentages == [50, 100]
        modes = [e["new"]["mode"] for e in _audit(gateway)]
        assert modes == ["canary", "new"]
        assert all(e["reason"].startswith("rollout advance: healthy") for e in _audit(gateway))
        answer = httpx.get(f"{gateway.base_url}/api/books")
        assert answer.headers["x-gateway-backend"] == "flaky"
    assert seen["failures"] == []
    assert seen["sides"].get("legacy", 0) > 0
    assert seen["sides"].get("flaky", 0) > 0


def _metric(gateway: GatewayProcess, name: str, **labels: str) -> float | None:
    """One sample of ``/_gateway/metrics`` (alice is an admin), ``None`` when absent."""
    admin = {"Authorization": f"Bearer {issue_token('alice', ['admin'], DEMO_JWT_SECRET)}"}
    text = httpx.get(f"{gateway.base_url}/_gateway/metrics", headers=admin).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


@pytest.mark.parametrize(
    ("mode", "metric", "cause"),
    [("fail", "error rate: new ", "error_rate"), ("slow", "latency: new p50 ", "latency")],
)
def test_a_failing_or_slow_new_side_is_rolled_back_with_the_reason(
    tmp_path: Path, mode: str, metric: str, cause: str
) -> None:
    config = _config(tmp_path)
    (tmp_path / "mode").write_text(mode)
    with GatewayProcess(config, env=_env()) as gateway, traffic(gateway.base_url):
        assert rollout(config, "start", "GET /api/books").returncode == 0

        rolled_back = eventually(
            lambda: status(config)["status"] == "rolled-back", limit=30, interval=0.2
        )

        assert rolled_back, status(config)
        shown = rollout(config, "status")
        assert "catalog-books (GET /api/books): rolled-back at step 1/3" in shown.stdout
        assert f"why rolled-back: {metric}" in shown.stdout
        audit = _audit(gateway)[-1]
        assert audit["new"]["mode"] == "legacy"
        assert audit["reason"].startswith(f"rollout rollback: {metric}")
        # And in the metrics: the state (from the shared flag state), the decision and its cause.
        flag = {"flag": "catalog-books"}
        assert eventually(
            lambda: _metric(gateway, "gateway_rollout_state", state="rolled-back", **flag) == 1
        )
        assert _metric(gateway, "gateway_rollout_state", state="running", **flag) == 0
        assert _metric(gateway, "gateway_rollout_step_percentage", **flag) == 10
        decision = {"decision": "rollback", "cause": cause, **flag}
        assert eventually(
            lambda: _metric(gateway, "gateway_rollout_decisions_total", **decision) == 1
        )
        # Legacy serves everyone now, and stays there until a person resumes.
        answer = httpx.get(
            f"{gateway.base_url}/api/books", headers={"Authorization": f"Bearer {TOKENS[0]}"}
        )
        assert answer.headers["x-gateway-backend"] == "legacy"
        time.sleep(1.5)  # three analysis intervals: nothing advances a rolled-back rollout
        assert status(config)["status"] == "rolled-back"

        (tmp_path / "mode").write_text("ok")
        resumed = rollout(config, "resume", "catalog-books")
        assert resumed.returncode == 0, resumed.stderr
        assert "catalog-books (GET /api/books): running at step 1/3 (10%" in resumed.stdout


def test_rollout_commands_refuse_what_does_not_apply(tmp_path: Path) -> None:
    config = _config(tmp_path)

    unknown = rollout(config, "start", "GET /api/bookz")
    nothing = rollout(config, "pause", "catalog-books")
    no_flag = rollout(config, "start", "GET /api/books/search")

    assert unknown.returncode == 2
    assert "no route 'GET /api/bookz'" in unknown.stderr
    assert "did you mean 'GET /api/books'" in unknown.stderr
    assert nothing.returncode == 1
    assert "no rollout of 'catalog-books'" in nothing.stderr
    assert no_flag.returncode == 2


# -- several hosts sharing Redis ------------------------------------------------------------------

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


@pytest.fixture
def redis_key() -> Iterator[str]:
    key = f"gateway-test:{uuid.uuid4().hex}"
    yield key
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    client.delete(key, *client.keys(f"{key}:*"))
    client.close()


def _host(config: Path, address: str, env: dict[str, str]) -> GatewayProcess:
    gateway = GatewayProcess(config, env=env, args=["--host", address])
    gateway.base_url = f"http://{address}:{gateway.port}"
    return gateway


def _percentage(gateway: GatewayProcess) -> int | None:
    """The canary share this host applies now, from its admin API."""
    try:
        answer = httpx.get(
            f"{gateway.base_url}/_gateway/api/flags/catalog-books",
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=2,
        )
    except httpx.TransportError:
        return None
    flag = answer.json()
    return 100 if flag["mode"] == "new" else int(flag["percentage"])


ADMIN = issue_token("alice", ["admin"], DEMO_JWT_SECRET)


@needs_redis
def test_three_hosts_follow_each_step_and_survive_the_leader_dying(
    tmp_path: Path, redis_key: str
) -> None:
    # Steps hold long enough for the test to find the leader and kill it mid-step.
    config = _config(tmp_path, hold=8)
    text = config.read_text().replace(
        'allowed_hosts = ["127.0.0.1", "localhost", "[::1]"]',
        'allowed_hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "localhost"]',
    )
    assert text != config.read_text()
    config.write_text(text)
    env = {**_env(), "GATEWAY_FLAGS__STORE": "redis", "GATEWAY_FLAGS__REDIS_KEY": redis_key}
    hosts = [_host(config, address, env).start(wait_ready=False) for address in HOSTS]
    try:
        for gateway in hosts:
            gateway.wait_ready()
        with traffic(*(gateway.base_url for gateway in hosts)):
            started = rollout(config, "start", "GET /api/books", env=env)
            assert started.returncode == 0, started.stderr

            # Every host applies the first advance (10% -> 50%) within a second of the first.
            first = eventually(lambda: any(_percentage(g) == 50 for g in hosts), limit=30)
            assert first
            assert seconds_until(lambda: all(_percentage(g) == 50 for g in hosts), 5) <= 1.0

            # Kill the leader without letting it say goodbye.
            leader = json.loads(rollout(config, "status", "--json", env=env).stdout)
            assert leader["rollouts"][0]["leader"], leader
            leader_pid = int(leader["rollouts"][0]["leader"].rsplit(":", 1)[1])
            dead = next(g for g in hosts if g.process and g.process.pid == leader_pid)
            dead.process.kill()  # type: ignore[union-attr]
            dead.process.wait()  # type: ignore[union-attr]
            alive = [g for g in hosts if g is not dead]

            # Another host takes over once the lease expires, and finishes the rollout.
            done = eventually(lambda: status(config, env)["status"] == "completed", limit=40)
            assert done, status(config, env)
            assert seconds_until(lambda: all(_percentage(g) == 100 for g in alive), 5) <= 1.0
            final = status(config, env)
            assert final["leader"] is None
    finally:
        for gateway in hosts:
            gateway.stop()
    # Each step advanced exactly once: a survivor took the last step (50% -> 100%) and nobody
    # repeated the one the dead leader took (its own log may have lost its last lines).
    survivors = [e for g in alive for e in _audit(g)]
    assert [(e["new"]["mode"], e["new"]["percentage"]) for e in survivors] == [("new", 100)]
    everyone = [e["new"]["percentage"] for g in hosts for e in _audit(g)]
    assert len(everyone) == len(set(everyone))
