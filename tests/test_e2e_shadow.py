"""End to end: shadow traffic, fallback to legacy and the circuit breaker, via ``gateway serve``.

One real server runs ``shadow_apps``: a legacy Flask app and a candidate service that disagree on
purpose (``tests/shadow_apps.py``). The candidate writes every call it receives to a file, so the
tests can see what reached it from outside the process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from app_config import ADMIN, apps_config
from support import REPO, GatewayProcess, eventually

pytestmark = pytest.mark.e2e

TESTS = Path(__file__).parent

CONFIG = (
    apps_config("shadow_apps", services={"svc": "create_candidate"})
    + """
[flags]
store = "file"
file = "var/flags.json"

[[routes]]
path = "/thing/{thing_id:int}"
methods = ["GET", "POST"]
backend = "svc"
[routes.flag]
name = "things"
mode = "shadow"
[routes.shadow]
noise_sample_rate = 1.0

[[routes]]
path = "/stable/{thing_id:int}"
methods = ["GET"]
backend = "svc"
flag = "things"
[routes.shadow]
noise_sample_rate = 0.0
ignore = ["/generated_at"]
unordered = ["/tags"]

[[routes]]
path = "/slow"
methods = ["GET"]
backend = "svc"
flag = "things"
[routes.shadow]
timeout = 10

[[routes]]
path = "/boom"
methods = ["GET"]
backend = "svc"
flag = "things"

[[routes]]
path = "/guarded/{mode}"
methods = ["GET", "PUT", "POST"]
backend = "svc"
timeout = 1.0
fallback = true
[routes.flag]
name = "guarded"
mode = "new"

[[routes]]
path = "/fragile"
methods = ["GET"]
backend = "svc"
fallback = true
[routes.breaker]
failures = 3
window = 60
cooldown = 2

[[routes]]
path = "/fragile-control"
methods = ["PUT"]
backend = "svc"
"""
)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("shadow")
    config = folder / "gateway.toml"
    config.write_text(CONFIG)
    events = folder / "candidate-events.txt"
    events.touch()
    env = {
        "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "SHADOW_EVENTS": str(events),
    }
    with GatewayProcess(config, env=env) as process:
        yield process


def candidate_calls(gateway: GatewayProcess) -> list[str]:
    events = Path(gateway.log_path).parent / "candidate-events.txt"
    return events.read_text().splitlines()


def get(gateway: GatewayProcess, path: str, **kwargs: Any) -> httpx.Response:
    request_id = uuid.uuid4().hex
    headers = {"X-Request-ID": request_id, **kwargs.pop("headers", {})}
    method = kwargs.pop("method", "GET")
    return httpx.request(method, f"{gateway.base_url}{path}", headers=headers, timeout=20, **kwargs)


def shadow_report(gateway: GatewayProcess) -> dict[str, Any]:
    response = httpx.get(f"{gateway.base_url}/_gateway/api/shadow", headers=ADMIN, timeout=5)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def route_counts(gateway: GatewayProcess, route: str) -> dict[str, Any]:
    counts: dict[str, Any] = shadow_report(gateway)["routes"].get(route, {})
    return counts


def run_cli(gateway: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    config = Path(gateway.log_path).parent / "gateway.toml"
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--config", str(config)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_slow_candidate_does_not_delay_the_client(gateway: GatewayProcess) -> None:
    started = time.monotonic()
    response = get(gateway, "/slow")
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.headers["x-gateway-backend"] == "legacy"
    # The candidate sleeps 3 s before answering; the client never waits for it.
    assert elapsed < 2.0, f"the client waited {elapsed:.2f}s for a 3 s candidate"
    assert eventually(lambda: "GET /slow" in candidate_calls(gateway))
    # ...and its (late, but correct) answer is still compared.
    assert eventually(lambda: route_counts(gateway, "GET /slow").get("matches") == 1, 15)


def test_a_raising_candidate_is_counted_not_surfaced(gateway: GatewayProcess) -> None:
    response = get(gateway, "/boom")
    assert response.status_code == 200
    assert response.json() == {"side": "legacy"}
    request_id = response.headers["x-request-id"]
    assert eventually(lambda: route_counts(gateway, "GET /boom").get("candidate_errors") == 1)
    [failed] = [
        e
        for e in gateway.events_for(request_id, until="shadow.candidate_failed")
        if e["event"] == "shadow.candidate_failed"
    ]
    assert failed["error"] == "RuntimeError: candidate exploded"
    # The candidate's failure never reaches the client's access line as an error.
    [access] = [e for e in gateway.events_for(request_id) if e["event"] == "request"]
    assert access["status"] == 200
    assert access["shadow"] == "svc"


def test_a_mismatch_is_reported_with_its_json_pointers(gateway: GatewayProcess) -> None:
    response = get(gateway, "/thing/7")
    assert response.status_code == 200
    assert response.json()["name"] == "thing"  # the primary (legacy) answered
    request_id = response.headers["x-request-id"]

    def mismatch() -> dict[str, Any] | None:
        for row in shadow_report(gateway)["recent"]:
            if row["request_id"] == request_id:
                return dict(row)
        return None

    found = eventually(mismatch)
    assert found is not None, shadow_report(gateway)
    assert (found["method"], found["path"], found["route"]) == (
        "GET",
        "/thing/7",
        "GET,POST /thing/{thing_id:int}",
    )
    assert (found["primary"], found["candidate"]) == ("legacy", "svc")
    differences = {d["pointer"]: d for d in found["differences"]}
    assert differences["/name"] == {
        "pointer": "/name",
        "kind": "changed",
        "primary": '"thing"',
        "candidate": '"Thing"',
    }
    assert "/tags/0" in differences
    # generated_at differs on every call, on either side: calibration learnt it as noise.
    assert "/generated_at" not in differences
    assert "/generated_at" in route_counts(gateway, "GET,POST /thing/{thing_id:int}")["noise"]

    # The CLI reads the same report from the worker reports, in JSON and as a table.
    def cli_has_it() -> bool:
        result = run_cli(gateway, "shadow", "report", "--json")
        assert result.returncode == 0, result.stderr
        return any(row["request_id"] == request_id for row in json.loads(result.stdout)["recent"])

    assert eventually(cli_has_it)
    table = run_cli(gateway, "shadow", "report")
    assert table.returncode == 0, table.stderr
    assert "GET,POST /thing/{thing_id:int}" in table.stdout
    assert 'changed  /name: "thing" -> "Thing"' in table.stdout


def test_ignore_and_unordered_rules_leave_a_match(gateway: GatewayProcess) -> None:
    # /stable differs only in tag order (unordered) and generated_at (ignored): a match.
    for thing_id in (1, 2, 3):
        assert get(gateway, f"/stable/{thing_id}").status_code == 200
    counts = eventually(
        lambda: (
            (c := route_counts(gateway, "GET /stable/{thing_id:int}"))
            and c["sampled"] == 3
            and c["matches"] == 3
            and c
        )
    )
    assert counts, route_counts(gateway, "GET /stable/{thing_id:int}")
    assert counts["mismatches"] == 0
    assert counts["noise"] == []  # no calibration on this route: the rules did it alone


def test_post_is_never_shadowed_by_default(gateway: GatewayProcess) -> None:
    response = get(gateway, "/thing/5", method="POST", json={"name": "x"})
    assert response.status_code == 200
    assert response.json() == {"id": 5, "posted": True}
    assert eventually(
        lambda: (
            route_counts(gateway, "GET,POST /thing/{thing_id:int}")
            .get("skipped", {})
            .get("unsafe-method")
        )
    )
    time.sleep(0.5)
    assert "POST /thing/5" not in candidate_calls(gateway)


@pytest.mark.parametrize(
    ("mode", "failure"), [("raise", "error"), ("500", "status-500"), ("hang", "timeout")]
)
def test_a_failing_new_side_is_answered_by_legacy(
    gateway: GatewayProcess, mode: str, failure: str
) -> None:
    response = get(gateway, f"/guarded/{mode}")
    assert response.status_code == 200, response.text
    assert response.headers["x-gateway-backend"] == "legacy"
    assert response.json() == {"side": "legacy", "mode": mode, "body": ""}
    [access] = [
        e for e in gateway.events_for(response.headers["x-request-id"]) if e["event"] == "request"
    ]
    assert (access["fallback"], access["backend"], access["status"]) == (failure, "legacy", 200)


def test_a_fallback_replays_a_kept_body_and_never_a_post(gateway: GatewayProcess) -> None:
    put = get(gateway, "/guarded/raise", method="PUT", content=b"keep me")
    assert put.status_code == 200
    assert put.json() == {"side": "legacy", "mode": "raise", "body": "keep me"}
    # POST is not idempotent: the new side's failure is the answer, never a second try.
    calls = candidate_calls(gateway).count("guarded raise")
    post = get(gateway, "/guarded/raise", method="POST", content=b"once only")
    assert post.status_code == 500
    assert post.headers["x-gateway-backend"] == "svc"
    # The gateway's JSON 500 with the request id, not FastAPI's plain-text one.
    assert post.json() == {
        "error": {"status": 500, "message": "internal server error"},
        "request_id": post.headers["x-request-id"],
    }
    [failed] = [
        e
        for e in gateway.events_for(post.headers["x-request-id"])
        if e["event"] == "request.failed"
    ]
    assert failed["exception"][0]["exc_value"] == "new side exploded"
    assert candidate_calls(gateway).count("guarded raise") == calls + 1


def test_the_breaker_opens_and_later_closes(gateway: GatewayProcess) -> None:
    def breaker() -> dict[str, Any]:
        response = httpx.get(f"{gateway.base_url}/_gateway/api/breakers", headers=ADMIN)
        state: dict[str, Any] = response.json()["breakers"]["GET /fragile"]
        return state

    assert breaker()["state"] == "closed"
    for _ in range(3):  # three 503s from the new side, each answered by legacy
        response = get(gateway, "/fragile")
        assert (response.status_code, response.headers["x-gateway-backend"]) == (200, "legacy")
    calls = candidate_calls(gateway).count("GET /fragile")
    assert calls == 3

    # Open: the next requests go straight to legacy; the new side is not even asked.
    response = get(gateway, "/fragile")
    assert (response.status_code, response.headers["x-gateway-backend"]) == (200, "legacy")
    [access] = [
        e for e in gateway.events_for(response.headers["x-request-id"]) if e["event"] == "request"
    ]
    assert access["breaker"] == "open"
    assert candidate_calls(gateway).count("GET /fragile") == 3
    assert breaker()["state"] == "open"
    assert eventually(
        lambda: "open" in run_cli(gateway, "routes").stdout.split("/fragile ")[1].splitlines()[0]
    )

    # The new side recovers; after the cool-down one trial request closes the breaker.
    assert get(gateway, "/fragile-control?on=false", method="PUT").status_code == 200
    time.sleep(2.2)
    trial = get(gateway, "/fragile")
    assert (trial.status_code, trial.headers["x-gateway-backend"]) == (200, "svc")
    assert trial.json() == {"side": "svc"}
    assert breaker()["state"] == "closed"

    def transitions() -> list[str]:
        return [e["event"] for e in gateway.log_events() if e.get("route") == "GET /fragile"]

    expected = ["breaker.opened", "breaker.half_open", "breaker.closed"]
    assert eventually(lambda: transitions()[-3:] == expected), transitions()
    assert get(gateway, "/fragile").headers["x-gateway-backend"] == "svc"


def test_the_report_adds_up_every_worker(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG)
    env = {"PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    with GatewayProcess(config, env=env, args=["--workers", "2"]) as gateway:
        for thing_id in range(20):  # a new connection each: the kernel spreads them
            assert httpx.get(f"{gateway.base_url}/stable/{thing_id}").status_code == 200

        def report() -> dict[str, Any]:
            result = run_cli(gateway, "shadow", "report", "--json")
            assert result.returncode == 0, result.stderr
            parsed: dict[str, Any] = json.loads(result.stdout)
            return parsed

        def all_counted() -> dict[str, Any] | None:
            current = report()
            counts = current["routes"].get("GET /stable/{thing_id:int}", {})
            return current if counts.get("matches") == 20 else None

        combined = eventually(all_counted)
        assert combined is not None, report()
        assert len(combined["workers"]) == 2
        pids = {worker.rsplit(":", 1)[1] for worker in combined["workers"]}
        assert len(pids) == 2
    # Stopped workers take their reports with them.
    assert report()["workers"] == []


def test_head_on_a_migrated_route_is_answered_like_flask_answers_it(
    gateway: GatewayProcess,
) -> None:
    # FastAPI alone answers HEAD with 405; Flask runs the GET handler. So does the gateway.
    get_response = get(gateway, "/guarded/ok")
    head = get(gateway, "/guarded/ok", method="HEAD")
    assert (head.status_code, head.headers["x-gateway-backend"]) == (200, "svc")
    assert head.content == b""
    assert head.headers["content-length"] == str(len(get_response.content))
    # ...and a shadowed HEAD compares like for like instead of reporting 200 vs 405.
    assert get(gateway, "/stable/9", method="HEAD").status_code == 200
    counts = eventually(
        lambda: (
            (c := route_counts(gateway, "GET /stable/{thing_id:int}"))
            and c["sampled"] == c["matches"]
            and c
        )
    )
    assert counts, route_counts(gateway, "GET /stable/{thing_id:int}")
