"""The dashboard's arithmetic and rules, from data: windows, quantiles, route states, CSRF,
mismatch rows; and its endpoints in-process (headers, refusals)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram
from support import call, demo_config, http_scope

from gateway.context import ANONYMOUS, FACTS_KEY, Identity, RequestFacts
from gateway.csrf import csrf_problem
from gateway.dashboard.overview import (
    _readable,
    group_mismatches,
    migration_status,
    rollout_view,
    route_state,
    shadow_view,
)
from gateway.dashboard.traffic import Counts, History, Reading, read_registry
from gateway.inventory import InventoryRow
from gateway.rollout.state import RolloutState
from gateway.settings import load_settings

ALICE_SESSION = Identity("alice", frozenset({"admin"}), "session")
ALICE_TOKEN = Identity("alice", frozenset({"admin"}), "jwt")


def reading(at: float, new: float, legacy: float, errors: float = 0.0) -> Reading:
    return Reading(
        at=at,
        routes={
            ("/api/books", "GET"): {
                "new": Counts(new, errors, {0.1: new, math.inf: new}),
                "legacy": Counts(legacy, 0.0, {0.1: legacy, math.inf: legacy}),
            }
        },
    )


# -- quantiles and windows ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("buckets", "q", "expected"),
    [
        # Linear inside the bucket holding the rank, as Prometheus' histogram_quantile.
        ({0.1: 10, 0.5: 20, math.inf: 20}, 0.5, 0.1),
        ({0.1: 10, 0.5: 20, math.inf: 20}, 0.99, 0.1 + 0.4 * 9.8 / 10),
        ({0.1: 0, 0.5: 4, math.inf: 4}, 0.5, 0.1 + 0.4 * 0.5),
        # Above the highest finite bound: that bound.
        ({0.1: 0, 0.5: 0, math.inf: 5}, 0.99, 0.5),
        ({0.1: 0, math.inf: 0}, 0.5, None),
        ({}, 0.5, None),
    ],
)
def test_quantile(buckets: dict[float, float], q: float, expected: float | None) -> None:
    result = Counts(buckets=buckets).quantile(q)
    assert result == (pytest.approx(expected) if expected is not None else None)


def test_windows_subtract_the_reading_a_window_ago() -> None:
    history = History()
    history.add(reading(0, new=0, legacy=0))
    history.add(reading(100, new=10, legacy=10))
    now = reading(400, new=30, legacy=10, errors=3)
    five = history.window(now, 300)
    assert five.span == 300
    assert five.sides["new"].requests == 20
    assert five.sides["legacy"].requests == 0
    assert five.share_new == 1.0
    day = history.window(now, 86_400)  # younger history: since the first reading
    assert day.span == 400
    assert day.share_new == pytest.approx(30 / 40)
    summary = day.as_dict()["sides"]["new"]
    assert summary["error_rate"] == pytest.approx(3 / 30)
    assert summary["rate"] == pytest.approx(30 / 400)


def test_a_reset_counter_counts_from_zero() -> None:
    history = History()
    history.add(reading(0, new=50, legacy=50))
    window = history.window(reading(10, new=5, legacy=60), 300)  # a worker restarted
    assert window.sides["new"].requests == 5
    assert window.sides["legacy"].requests == 10


def test_no_traffic_has_no_share() -> None:
    history = History()
    assert history.window(reading(0, 0, 0), 300).share_new is None  # no history at all
    history.add(reading(0, 0, 0))
    assert history.window(reading(5, 0, 0), 300).share_new is None


def test_history_thins_as_it_ages() -> None:
    history = History()
    for second in range(0, 2 * 3600 + 1, 5):
        history.add(reading(second, new=second, legacy=0))
    # The last hour at every 5 s, the hour before once a minute; detail for ten minutes.
    assert 720 + 59 <= len(history._totals) <= 720 + 62
    assert len(history._readings) == 121
    window = history.window(reading(7200, new=7200, legacy=0), 86_400)
    assert window.span == 7200
    assert window.sides["new"].requests == 7200
    points = history.series(900)
    assert len(points) == 181  # from 6300 s to 7200 s, both ends
    assert points[-1]["new"]["rate"] == pytest.approx(1.0)


def test_read_registry_splits_sides_and_leaves_the_gateway_out() -> None:
    registry = CollectorRegistry()
    requests = Counter(
        "gateway_requests_total",
        "",
        ["route", "method", "backend", "status_class"],
        registry=registry,
    )
    duration = Histogram(
        "gateway_request_duration_seconds", "", ["route", "method", "backend"], registry=registry
    )
    requests.labels("/api/books", "GET", "catalog", "2xx").inc(3)
    requests.labels("/api/books", "GET", "catalog", "5xx").inc(1)
    requests.labels("/api/books", "GET", "legacy", "2xx").inc(2)
    requests.labels("/_gateway/api/status", "GET", "gateway", "2xx").inc(7)
    duration.labels("/api/books", "GET", "catalog").observe(0.2)
    result = read_registry(registry, at=1.0)
    books = result.routes[("/api/books", "GET")]
    assert (books["new"].requests, books["new"].errors) == (4, 1)
    assert books["legacy"].requests == 2
    assert books["new"].buckets[0.25] == 1
    assert ("/_gateway/api/status", "GET") not in result.routes
    assert result.sides()["new"].requests == 4


# -- route states -------------------------------------------------------------------------------


def row(served_by: str | None, flag: str | None = None, status: str = "migrated") -> InventoryRow:
    return InventoryRow("/x", ("GET",), served_by, status, "x", (), flag)  # type: ignore[arg-type]


def flags(mode: str = "canary", percentage: int = 50, kill: bool = False) -> dict[str, Any]:
    return {"kill_switch": kill, "flags": {"f": {"mode": mode, "percentage": percentage}}}


@pytest.mark.parametrize(
    ("the_row", "the_flags", "state"),
    [
        (row("legacy", status="legacy"), flags(), "legacy"),
        (row("catalog"), flags(), "new"),
        (row("catalog", status="new-only"), flags(), "new"),
        (row("catalog", "f"), flags("canary", 50), "canary"),
        (row("catalog", "f"), flags("canary", 0), "legacy"),
        (row("catalog", "f"), flags("canary", 100), "new"),
        (row("catalog", "f"), flags("shadow"), "shadow"),
        (row("catalog", "f"), flags("new"), "new"),
        (row("catalog", "f"), flags("legacy"), "legacy"),
        (row("catalog", "f"), flags("new", kill=True), "legacy"),
        (row(None, status="unrouted"), flags(), None),
        (row("catalog", status="retired"), flags(), "retired"),
    ],
)
def test_route_state(the_row: InventoryRow, the_flags: dict[str, Any], state: str | None) -> None:
    assert route_state(the_row, the_flags) == state


def test_migration_status_counts_states() -> None:
    rows = [row("legacy", status="legacy"), row("catalog", "f"), row(None, status="unrouted")]
    status = migration_status(rows, flags("shadow"), History(), reading(0, 0, 0))
    assert status["routes"] == 2
    assert status["states"] == {"legacy": 1, "shadow": 1, "canary": 0, "new": 0, "retired": 0}
    assert status["share_new"] == {"5m": None, "1h": None, "24h": None}


# -- rollouts ------------------------------------------------------------------------------------


def test_rollout_view_shows_each_rollout_and_offers_a_start_where_none_runs(
    tmp_path: Path,
) -> None:
    routes = load_settings(demo_config(tmp_path, flags=None), {}).routes
    idle = rollout_view(routes, {}, 100.0)
    # The demo plans a rollout for GET /api/books only ([routes.rollout]).
    start = {"route": "GET /api/books", "flag": "catalog-books", "steps": [10, 50, 100]}
    assert idle == {"rollouts": [], "startable": [start]}

    running = RolloutState(route="GET /api/books", steps=(10, 50, 100)).restarted(1, 40.0)
    view = rollout_view(routes, {"catalog-books": running}, 100.0)
    assert view["startable"] == []
    [shown] = view["rollouts"]
    assert (shown["flag"], shown["status"], shown["step"], shown["current"]) == (
        "catalog-books",
        "running",
        2,
        50,
    )
    assert shown["step_age_seconds"] == 60.0

    back = running.model_copy(update={"status": "rolled-back", "reason": "latency: new p50 ..."})
    paused = running.model_copy(update={"status": "paused"})
    assert rollout_view(routes, {"catalog-books": paused}, 100.0)["startable"] == []
    view = rollout_view(routes, {"catalog-books": back}, 100.0)
    assert view["rollouts"][0]["reason"] == "latency: new p50 ..."
    assert view["startable"] == [start]  # a new rollout may start over a finished one


# -- mismatches ---------------------------------------------------------------------------------


@pytest.mark.parametrize("primary", ["legacy", "accounts"])
def test_mismatch_rows_name_legacy_and_new_whichever_was_primary(primary: str) -> None:
    legacy_first = primary == "legacy"
    mismatch = {
        "primary": primary,
        "candidate": "accounts" if legacy_first else "legacy",
        "primary_status": 200 if legacy_first else 201,
        "candidate_status": 201 if legacy_first else 200,
        "differences": [
            {
                "pointer": "/display_name",
                "kind": "added" if legacy_first else "missing",
                "primary": None if legacy_first else '"Alice"',
                "candidate": '"Alice"' if legacy_first else None,
            }
        ],
    }
    shown = _readable(mismatch)
    assert shown["service"] == "accounts"
    assert (shown["legacy_status"], shown["new_status"]) == (200, 201)
    assert shown["differences"][0]["legacy"] is None
    assert shown["differences"][0]["new"] == '"Alice"'


def test_the_same_mismatch_is_shown_once_with_its_count() -> None:
    def mismatch(request_id: str, new: str) -> dict[str, Any]:
        difference = {"pointer": "/name", "kind": "changed", "primary": '"a"', "candidate": new}
        return {
            "request_id": request_id,
            "route": "GET /api/me",
            "primary": "legacy",
            "candidate": "accounts",
            "primary_status": 200,
            "candidate_status": 200,
            "differences": [difference],
        }

    recent = [mismatch("r3", '"b"'), mismatch("r2", '"c"'), mismatch("r1", '"b"')]
    groups = group_mismatches({"recent": recent})
    assert [(g["request_id"], g["count"]) for g in groups] == [("r3", 2), ("r2", 1)]
    assert len(group_mismatches({"recent": recent}, limit=1)) == 1


# -- CSRF ---------------------------------------------------------------------------------------

JSON = (b"content-type", b"application/json")
MARK = (b"x-gateway-csrf", b"1")
HOST = (b"host", b"gw.example")


@pytest.mark.parametrize(
    ("method", "identity", "headers", "refused"),
    [
        ("GET", ALICE_SESSION, [], False),
        ("PUT", ALICE_TOKEN, [], False),  # a bearer token is no ambient credential
        ("PUT", ANONYMOUS, [], False),  # the admin check answers 401
        ("PUT", ALICE_SESSION, [JSON, MARK, HOST], False),  # a client that says nothing more
        ("PUT", ALICE_SESSION, [JSON, MARK, HOST, (b"sec-fetch-site", b"same-origin")], False),
        ("PUT", ALICE_SESSION, [JSON, MARK, HOST, (b"origin", b"http://gw.example")], False),
        ("PUT", ALICE_SESSION, [JSON, HOST], True),  # a form: no custom header
        ("POST", ALICE_SESSION, [(b"content-type", b"text/plain"), HOST], True),  # a form
        ("PUT", ALICE_SESSION, [JSON, MARK, HOST, (b"sec-fetch-site", b"same-site")], True),
        ("PUT", ALICE_SESSION, [JSON, MARK, HOST, (b"origin", b"http://evil.example")], True),
        ("PUT", ALICE_SESSION, [JSON, MARK, HOST, (b"origin", b"https://gw.example")], True),
        ("DELETE", ALICE_SESSION, [HOST], True),
    ],
)
def test_csrf(
    method: str, identity: Identity, headers: list[tuple[bytes, bytes]], refused: bool
) -> None:
    scope = http_scope("/_gateway/api/kill-switch", method, headers)
    assert (csrf_problem(scope, identity) is not None) is refused


# -- the endpoints ------------------------------------------------------------------------------


class _Admin:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"admin"})


def dashboard_app() -> Any:
    from gateway.dashboard import Dashboard, DashboardApp
    from gateway.flags.runtime import FlagRuntime
    from gateway.flags.stores import FlagStore
    from gateway.inventory import Inventory
    from gateway.storage.memory import MemoryStorage

    inventory = Inventory(
        rows=(row("legacy", status="legacy"),), legacy_routes=(), plans=(), service_methods={}
    )
    runtime = FlagRuntime(store=FlagStore(MemoryStorage()), defaults={})
    dashboard = Dashboard(
        registry=CollectorRegistry(), inventory=lambda: inventory, flags=runtime, reports=None
    )
    return DashboardApp(_Admin(), dashboard=dashboard)


async def ask(path: str, identity: Identity, method: str = "GET", headers: Any = ()) -> Any:
    scope = http_scope(path, method, headers)
    scope[FACTS_KEY] = RequestFacts(request_id="r1", path=path, method=method, identity=identity)
    return await call(dashboard_app(), scope)


@pytest.mark.anyio
async def test_page_carries_a_strict_csp_and_no_inline_script() -> None:
    answer = await ask("/_gateway/", ALICE_TOKEN)
    assert answer.status == 200
    csp = answer.headers[b"content-security-policy"].decode()
    assert "default-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert answer.headers[b"x-frame-options"] == b"DENY"
    assert b"<script>" not in answer.body
    assert b'<script src="/_gateway/static/dashboard.js" defer>' in answer.body
    assert b"style=" not in answer.body


@pytest.mark.anyio
async def test_static_assets_are_served_from_the_package() -> None:
    script = await ask("/_gateway/static/dashboard.js", ALICE_TOKEN)
    assert script.status == 200
    assert script.headers[b"content-type"].startswith(b"text/javascript")
    assert b"innerHTML" not in script.body.replace(b"never innerHTML", b"")
    assert (await ask("/_gateway/static/nope.js", ALICE_TOKEN)).status == 404
    assert (await ask("/_gateway/static/../app.py", ALICE_TOKEN)).status == 404


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("identity", "status"), [(ANONYMOUS, 401), (Identity("bob", frozenset({"user"}), "jwt"), 403)]
)
@pytest.mark.parametrize(
    "path",
    [
        "/_gateway/",
        "/_gateway/api/dashboard",
        "/_gateway/api/status",
        "/_gateway/static/dashboard.css",
    ],
)
async def test_refused_unless_admin(identity: Identity, status: int, path: str) -> None:
    answer = await ask(path, identity)
    assert answer.status == status
    assert answer.headers[b"content-type"] == b"application/json"


@pytest.mark.anyio
async def test_other_paths_reach_the_admin_api_and_forgeries_do_not() -> None:
    assert (await ask("/_gateway/api/flags", ALICE_SESSION)).status == 299
    forged = await ask("/_gateway/api/kill-switch", ALICE_SESSION, "PUT", [JSON])
    assert forged.status == 403
    allowed = await ask("/_gateway/api/kill-switch", ALICE_SESSION, "PUT", [JSON, MARK])
    assert allowed.status == 299
    # The rollout buttons' POSTs too.
    rollout = "/_gateway/api/rollouts/catalog-books/abort"
    assert (await ask(rollout, ALICE_SESSION, "POST", [JSON])).status == 403
    assert (await ask(rollout, ALICE_SESSION, "POST", [JSON, MARK])).status == 299
    assert (await ask("/_gateway/", ALICE_TOKEN, "POST")).status == 405


@pytest.mark.anyio
async def test_status_endpoint_answers_json() -> None:
    answer = await ask("/_gateway/api/status", ALICE_TOKEN)
    assert answer.status == 200
    import json

    body = json.loads(answer.body)
    assert body["states"]["legacy"] == 1
    assert body["windows"]["5m"]["requests"] == 0


# -- sampling and the gateway's metrics -----------------------------------------------------------


@pytest.mark.anyio
async def test_the_sampler_reads_from_the_start_until_it_stops() -> None:
    import anyio

    from gateway.dashboard.sampler import Sampler

    registry = CollectorRegistry()
    requests = Counter(
        "gateway_requests_total",
        "",
        ["route", "method", "backend", "status_class"],
        registry=registry,
    )
    history = History()
    async with Sampler(registry, history, interval=0.01):
        assert len(history._totals) == 1  # the baseline, before the first request
        requests.labels("/a", "GET", "svc", "2xx").inc()
        with anyio.fail_after(5):
            while history._totals[-1][1]["new"].requests < 1:
                await anyio.sleep(0.01)
    taken = len(history._totals)
    await anyio.sleep(0.05)
    assert len(history._totals) == taken  # stopped with the gateway


def test_the_dashboard_reads_what_the_gateways_metrics_recorded() -> None:
    """``Metrics.collect()`` (what ``create_app`` hands the dashboard) flushes this worker's
    request-path cells first, so a reading taken right after a request already counts it."""
    from gateway.metrics import Metrics
    from gateway.shadow.results import ShadowResults

    results = ShadowResults()
    results.count("GET /api/me", "mismatches")
    results.skip("GET /api/me", "concurrency")
    metrics = Metrics()
    metrics.recorder.watch(shadow=results)

    def facts(**fields: Any) -> RequestFacts:
        return RequestFacts(request_id="r", path="/p", method="GET", **fields)

    record = metrics.recorder.request
    record(facts(route="/api/books", backend="catalog"), 200, 0.01)
    record(facts(route="/api/books", backend="legacy", fallback="timeout"), 200, 2.5)
    record(facts(route="/api/books", backend="legacy", breaker="open"), 200, 0.01)
    record(facts(backend="legacy"), 404, 0.01)
    record(facts(route="/api/books", backend="catalog", fallback="status-502"), 502, 0.1)
    now = read_registry(metrics)
    books = now.routes[("/api/books", "GET")]
    assert (books["new"].requests, books["new"].errors, books["legacy"].requests) == (2, 1, 2)
    assert now.routes[("<unmatched>", "GET")]["legacy"].requests == 1
    assert now.fallbacks == {
        ("/api/books", "timeout"): 1,
        ("/api/books", "breaker"): 1,
        ("/api/books", "status"): 1,
    }
    assert now.shadow[("GET /api/me", "mismatch")] == 1  # no plan: named by its label
    assert now.shadow_skipped == {"GET /api/me": 1}
    shown = shadow_view(now, {"recent": []})["routes"]["GET /api/me"]
    assert (shown["mismatch"], shown["match"], shown["skipped"]) == (1, 0, 1)
