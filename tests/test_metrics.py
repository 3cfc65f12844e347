"""Prometheus metrics (``gateway.metrics``) through the whole app, in process: every family, read
back from ``/_gateway/metrics`` with prometheus-client's own parser, as a scraper sees them."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from app_config import ADMIN, USER, apps_config
from metrics_apps import ROUTES
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient
from support import call, eventually, free_port, http_scope

from gateway.app import create_app
from gateway.context import RequestFacts
from gateway.errors import ConfigError, StartupError
from gateway.metrics.families import Families
from gateway.metrics.listener import start_listener
from gateway.metrics.recorder import Recorder
from gateway.rollout.state import RolloutState
from gateway.settings import load_settings

CONFIG = (
    apps_config("metrics_apps", legacy="threads = 1\nqueue_timeout = 0.2")
    + """
[[auth.policies]]
path = "/legacy/private/{n:int}"
access = "authenticated"

[limits]
max_body_size = 100

[flags]
store = "memory"

"""
    + ROUTES
    + """
[[routes]]
path = "/guarded/{mode}"
methods = ["GET"]
backend = "svc"
timeout = 1.0
fallback = true
[routes.breaker]
failures = 2
window = 60
cooldown = 60

[[routes]]
path = "/shadowed"
methods = ["GET", "POST"]
backend = "svc"
[routes.flag]
name = "shadowed"
mode = "shadow"
[routes.shadow]
noise_sample_rate = 0.0
side_effect_free = false
"""
)

HOST = [(b"host", b"localhost")]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def write_config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG + extra)
    return path


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(load_settings(write_config(tmp_path), {}))
    with TestClient(app, base_url="http://localhost") as client:
        yield client


def scrape(client: TestClient) -> Samples:
    response = client.get("/_gateway/metrics", headers=ADMIN)
    assert response.status_code == 200
    return parse(response.text)


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, route: str, backend: str, status_class: str = "2xx") -> float:
    return value(
        samples,
        "gateway_requests_total",
        route=route,
        method="GET",
        backend=backend,
        status_class=status_class,
    )


def test_requests_are_counted_per_route_template_backend_and_status_class(
    client: TestClient,
) -> None:
    for _ in range(3):
        assert client.get("/new/hello").status_code == 200
    for n in (1, 2):
        assert client.get(f"/flagged/{n}").json() == {"side": "svc"}
    for n in (1, 2, 3, 4):
        assert client.get(f"/legacy/items/{n}").status_code == 200
    assert client.get("/no/such/page").status_code == 404

    samples = scrape(client)
    assert requests(samples, "/new/hello", "svc") == 3
    assert requests(samples, "/flagged/{n:int}", "svc") == 2
    # Not configured: labelled with the Flask rule, in the gateway's template syntax.
    assert requests(samples, "/legacy/items/{item_id:int}", "legacy") == 4
    assert requests(samples, "<unmatched>", "legacy", "4xx") == 1
    # The latency histogram saw the same requests, in seconds.
    labels = {"route": "/legacy/items/{item_id:int}", "method": "GET", "backend": "legacy"}
    assert value(samples, "gateway_request_duration_seconds_count", **labels) == 4
    assert value(samples, "gateway_request_duration_seconds_bucket", le="+Inf", **labels) == 4
    assert 0 < value(samples, "gateway_request_duration_seconds_sum", **labels) < 4 * 0.5
    # The flag said "new" for each flagged request, by its mode.
    decision = {"route": "/flagged/{n:int}", "flag": "flagged", "side": "new"}
    assert value(samples, "gateway_flag_decisions_total", reason="default", **decision) == 2
    # Never a raw path in a label.
    assert not [key for key in samples if ("route", "/legacy/items/1") in key[1]]


def test_a_request_refused_before_routing_is_labelled_with_the_route_it_was_for(
    client: TestClient,
) -> None:
    assert client.get("/legacy/private/7").status_code == 401
    assert client.get("/legacy/private/8", headers=USER).status_code == 200
    samples = scrape(client)
    assert requests(samples, "/legacy/private/{n:int}", "gateway", "4xx") == 1
    assert requests(samples, "/legacy/private/{n:int}", "legacy", "2xx") == 1


def test_fallbacks_by_cause_and_the_breaker_state(client: TestClient) -> None:
    assert client.get("/guarded/ok").json() == {"side": "svc"}
    assert client.get("/guarded/500").json() == {"side": "legacy"}
    samples = scrape(client)
    fallback = {"route": "/guarded/{mode}"}
    assert value(samples, "gateway_fallbacks_total", cause="status", **fallback) == 1
    assert value(samples, "gateway_breaker_open", route="/guarded/{mode}") == 0

    # The second failure opens the breaker (failures = 2); the next request goes to legacy.
    assert client.get("/guarded/raise").json() == {"side": "legacy"}
    assert client.get("/guarded/ok").json() == {"side": "legacy"}
    samples = scrape(client)
    assert value(samples, "gateway_fallbacks_total", cause="exception", **fallback) == 1
    assert value(samples, "gateway_fallbacks_total", cause="breaker", **fallback) == 1
    assert value(samples, "gateway_breaker_open", route="/guarded/{mode}") == 1
    assert requests(samples, "/guarded/{mode}", "legacy") == 3
    assert requests(samples, "/guarded/{mode}", "svc") == 1


def test_shadow_samples_by_outcome_and_skips_by_reason(client: TestClient) -> None:
    for _ in range(2):
        assert client.get("/shadowed").json() == {"answer": 1}  # legacy is the primary
    assert client.post("/shadowed").json() == {"answer": 1}  # not copied: not side-effect-free

    def judged() -> Samples | None:
        samples = scrape(client)
        outcome = {"route": "/shadowed", "outcome": "mismatch"}
        return samples if value(samples, "gateway_shadow_samples_total", **outcome) == 2 else None

    samples = eventually(judged)  # the copies run after the client has its answer
    assert samples is not None, "the shadow copies were never judged"
    assert value(samples, "gateway_shadow_samples_total", route="/shadowed", outcome="match") == 0
    skipped = {"route": "/shadowed", "reason": "unsafe-method"}
    assert value(samples, "gateway_shadow_skipped_total", **skipped) == 1
    decision = {"route": "/shadowed", "flag": "shadowed", "side": "legacy", "reason": "shadow"}
    # The POST was decided too (shadow mode), then not copied.
    assert value(samples, "gateway_flag_decisions_total", **decision) == 3


def test_legacy_pool_occupancy_admission_waits_and_503s(client: TestClient) -> None:
    # One legacy thread, 0.2 s of queueing: of two concurrent half-second views, one waits
    # and then gets 503.
    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(lambda _: client.get("/legacy/slow").status_code, range(2)))
    assert statuses == [200, 503]
    samples = scrape(client)
    assert value(samples, "gateway_legacy_admission_waits_total") == 1
    assert value(samples, "gateway_legacy_admission_rejections_total") == 1
    assert value(samples, "gateway_legacy_pool_threads", state="size") == 1
    assert value(samples, "gateway_legacy_pool_threads", state="busy") == 0
    assert requests(samples, "/legacy/slow", "legacy", "5xx") == 1


def test_in_flight_requests_per_backend(client: TestClient) -> None:
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(client.get, "/legacy/slow")

        def busy() -> Samples | None:
            samples = scrape(client)
            in_flight = value(samples, "gateway_requests_in_flight", backend="legacy")
            return samples if in_flight == 1 else None

        samples = eventually(busy)
        assert samples is not None, "the slow legacy request never showed as in flight"
        assert value(samples, "gateway_legacy_pool_threads", state="busy") == 1
        # The scrape itself is the gateway's own request in flight.
        assert value(samples, "gateway_requests_in_flight", backend="gateway") == 1
        assert slow.result().status_code == 200
    assert value(scrape(client), "gateway_requests_in_flight", backend="legacy") == 0


def test_edge_rejections_by_status_and_reason(client: TestClient) -> None:
    assert client.get("/a%2Fb").status_code == 400
    assert client.post("/legacy/hello", content=b"x" * 101).status_code == 413
    samples = scrape(client)
    encoded = "the request path contains an encoded '/' or '\\'"
    assert value(samples, "gateway_edge_rejections_total", status="400", reason=encoded) == 1
    too_large = "the request body is larger than 100 bytes"
    assert value(samples, "gateway_edge_rejections_total", status="413", reason=too_large) == 1
    assert requests(samples, "<unmatched>", "gateway", "4xx") == 1


def test_the_text_format_parses_with_every_agreed_family_and_label(client: TestClient) -> None:
    # A request for every family.
    for path in ("/new/hello", "/flagged/1", "/guarded/500", "/shadowed", "/a%2Fb"):
        client.get(path)
    client.post("/shadowed")
    started = client.post("/_gateway/api/rollouts", json={"route": "/flagged/1"}, headers=ADMIN)
    assert started.status_code == 201, started.text
    eventually(
        lambda: value(
            scrape(client), "gateway_shadow_samples_total", route="/shadowed", outcome="mismatch"
        )
    )
    response = client.get("/_gateway/metrics", headers=ADMIN)
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    expected = {
        "gateway_requests": ("counter", {"route", "method", "backend", "status_class"}),
        "gateway_request_duration_seconds": ("histogram", {"route", "method", "backend", "le"}),
        "gateway_requests_in_flight": ("gauge", {"backend"}),
        "gateway_breaker_open": ("gauge", {"route"}),
        "gateway_legacy_pool_threads": ("gauge", {"state"}),
        "gateway_legacy_admission_waits": ("counter", set()),
        "gateway_legacy_admission_rejections": ("counter", set()),
        "gateway_flag_decisions": ("counter", {"route", "flag", "side", "reason"}),
        "gateway_fallbacks": ("counter", {"route", "cause"}),
        "gateway_shadow_samples": ("counter", {"route", "outcome"}),
        "gateway_shadow_skipped": ("counter", {"route", "reason"}),
        "gateway_edge_rejections": ("counter", {"status", "reason"}),
        "gateway_rollout_step_percentage": ("gauge", {"flag"}),
        "gateway_rollout_state": ("gauge", {"flag", "state"}),
    }
    for name, (kind, labels) in expected.items():
        assert families[name].type == kind, name
        samples = [s for s in families[name].samples if not s.name.endswith("_created")]
        assert samples, name
        for sample in samples:
            bucket = sample.name.endswith("_bucket")
            assert set(sample.labels) == (labels if bucket else labels - {"le"}), (name, sample)


def test_metrics_need_an_admin(client: TestClient) -> None:
    anonymous = client.get("/_gateway/metrics")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="gateway"'
    assert anonymous.json()["request_id"] == anonymous.headers["x-request-id"]
    assert client.get("/_gateway/metrics", headers=USER).status_code == 403
    assert client.get("/_gateway/metrics", headers=ADMIN).status_code == 200


def test_metrics_off_records_nothing_and_serves_no_endpoint(tmp_path: Path) -> None:
    app = create_app(load_settings(write_config(tmp_path, "[metrics]\nenabled = false\n"), {}))
    assert app.metrics is None
    with TestClient(app, base_url="http://localhost") as client:
        assert client.get("/new/hello").status_code == 200
        assert client.get("/_gateway/metrics", headers=ADMIN).status_code == 404


@pytest.mark.parametrize("listen", ["9100", "localhost", "127.0.0.1:port", "[::1:9100"])
def test_a_listen_address_that_is_not_host_port_is_a_config_error(
    tmp_path: Path, listen: str
) -> None:
    config = write_config(tmp_path, f'[metrics]\nlisten = "{listen}"\n')
    with pytest.raises(ConfigError) as error:
        load_settings(config, {})
    assert "metrics.listen" in str(error.value)
    assert str(config) in str(error.value)


@pytest.mark.anyio
async def test_ten_thousand_distinct_paths_keep_the_series_count_flat(tmp_path: Path) -> None:
    app = create_app(load_settings(write_config(tmp_path), {}))
    assert app.metrics is not None

    async def send_paths(numbers: range) -> None:
        for n in numbers:
            for path in (f"/legacy/items/{n}", f"/flagged/{n}", f"/nothing/{n}", f"/x{n}%2F"):
                await call(app, http_scope(path, headers=HOST, raw_path=path.encode()))
            await call(app, http_scope("/new/hello", method=f"M{n}", headers=HOST))

    def series() -> int:
        return len(parse(app.metrics.render().decode()))  # type: ignore[union-attr]

    await send_paths(range(20))
    first = series()
    await send_paths(range(20, 2500))  # 10,000 distinct paths and 2,480 distinct methods more
    assert series() == first
    samples = parse(app.metrics.render().decode())
    assert requests(samples, "/legacy/items/{item_id:int}", "legacy") == 2500
    assert requests(samples, "<unmatched>", "legacy", "4xx") == 2500
    other_method = {"route": "/new/hello", "method": "other", "backend": "svc"}
    assert value(samples, "gateway_requests_total", status_class="4xx", **other_method) == 0
    # An unknown method is answered 405 by the service: counted under "other", not per token.
    assert (
        sum(
            v
            for (name, labels), v in samples.items()
            if name == "gateway_requests_total" and ("method", "other") in labels
        )
        == 2500
    )


def facts(**fields: Any) -> RequestFacts:
    return RequestFacts(request_id="r", path="/p", method=fields.pop("method", "GET"), **fields)


def test_a_request_without_an_answer_counts_as_the_clients_or_the_gateways_failure() -> None:
    recorder, families = Recorder(), Families(registry := CollectorRegistry())
    recorder.request(facts(route="/p", disconnected=True), None, 0.01)
    recorder.request(facts(route="/p", aborted=True), None, 0.01)
    recorder.flush(families)
    samples = parse(generate_latest(registry).decode())
    base = {"route": "/p", "method": "GET", "backend": "legacy"}
    assert value(samples, "gateway_requests_total", status_class="4xx", **base) == 1
    assert value(samples, "gateway_requests_total", status_class="5xx", **base) == 1
    # Flushed once: a second flush adds nothing.
    recorder.flush(families)
    assert parse(generate_latest(registry).decode()) == samples


@pytest.mark.anyio
async def test_two_apps_in_one_process_count_only_their_own_requests(tmp_path: Path) -> None:
    """Each app has its own registry (tests, several gateways in one process)."""
    first = create_app(load_settings(write_config(tmp_path), {}))
    second = create_app(load_settings(write_config(tmp_path), {}))
    assert first.metrics is not None
    assert second.metrics is not None
    await call(first, http_scope("/new/hello", headers=HOST))
    assert requests(parse(first.metrics.render().decode()), "/new/hello", "svc") == 1
    assert requests(parse(second.metrics.render().decode()), "/new/hello", "svc") == 0


def test_a_listen_address_in_use_is_a_startup_error_that_names_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(StartupError) as error:
            start_listener(address, CollectorRegistry())
    assert f"cannot listen on {address} for [metrics] listen" in str(error.value)


def test_the_listener_serves_the_registry_without_credentials(tmp_path: Path) -> None:
    app = create_app(load_settings(write_config(tmp_path), {}))
    assert app.metrics is not None
    port = free_port()
    server = start_listener(f"127.0.0.1:{port}", app.metrics.registry)
    try:
        app.metrics.flush()
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        server.shutdown()
        server.server_close()
    assert value(parse(text), "gateway_legacy_pool_threads", state="size") == 1


def test_rollouts_are_exported_from_the_shared_state_at_every_flush() -> None:
    recorder, families = Recorder(), Families(registry := CollectorRegistry())
    rollouts: dict[str, RolloutState] = {
        "books": RolloutState(route="GET /api/books", steps=("shadow", 10, 100), step=1),
        "me": RolloutState(route="GET /api/me", steps=("shadow", 100)),
    }
    recorder.watch(rollouts=lambda: rollouts)
    recorder.flush(families)
    samples = parse(generate_latest(registry).decode())
    assert value(samples, "gateway_rollout_step_percentage", flag="books") == 10
    assert ("gateway_rollout_step_percentage", frozenset({("flag", "me")})) in samples  # shadow: 0
    assert value(samples, "gateway_rollout_step_percentage", flag="me") == 0
    states = {
        status: value(samples, "gateway_rollout_state", flag="books", state=status)
        for status in ("running", "paused", "rolled-back", "completed", "aborted")
    }
    assert states == {"running": 1, "paused": 0, "rolled-back": 0, "completed": 0, "aborted": 0}

    # The state moved (in another process, say): the next flush says so; a rollout whose flag
    # was deleted leaves no series behind.
    rollouts["books"] = rollouts["books"].model_copy(update={"status": "rolled-back"})
    del rollouts["me"]
    recorder.rollout_decision("books", "rollback", "latency")
    recorder.flush(families)
    samples = parse(generate_latest(registry).decode())
    assert value(samples, "gateway_rollout_state", flag="books", state="rolled-back") == 1
    assert value(samples, "gateway_rollout_state", flag="books", state="running") == 0
    assert not [key for key in samples if ("flag", "me") in key[1]]
    decisions = {"flag": "books", "decision": "rollback", "cause": "latency"}
    assert value(samples, "gateway_rollout_decisions_total", **decisions) == 1
    recorder.flush(families)  # counted once
    assert (
        value(
            parse(generate_latest(registry).decode()),
            "gateway_rollout_decisions_total",
            **decisions,
        )
        == 1
    )
