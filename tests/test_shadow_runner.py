"""ShadowRunner in process: raw ASGI primary and candidate apps, results read from ShadowResults.

A copy runs in a task of its own after the client's answer; tests wait for those tasks (never
``runner.close()``, which cancels them) before they read the results.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

import pytest
from shadow_unit_apps import EchoApp, answer, answer_json, gateway_scope
from structlog.testing import capture_logs
from support import Exchange, call

from gateway.context import FACTS_KEY, request_facts
from gateway.flags.model import FlagDecision
from gateway.resilience import GuardedService
from gateway.shadow.results import ShadowResults
from gateway.shadow.runner import ShadowPlan, ShadowRunner

pytestmark = pytest.mark.anyio

ROUTE = "GET /thing/{id}"
NAMES = ("legacy", "svc")


def make_runner(
    *, keep: int = 100, max_concurrent: int = 16, chance: Callable[[], float] | None = None
) -> ShadowRunner:
    return ShadowRunner(
        results=ShadowResults(keep=keep),
        max_concurrent=max_concurrent,
        chance=chance or (lambda: 0.99),  # never calibrate unless a test says so
    )


async def settled(runner: ShadowRunner) -> None:
    """Wait for every copy running now to finish."""
    await asyncio.wait_for(asyncio.gather(*list(runner._tasks)), timeout=5)
    assert runner.active == 0


async def serve(
    runner: ShadowRunner,
    plan: ShadowPlan,
    scope: dict[str, Any],
    primary: Any,
    candidate: Any,
    body: list[bytes] | None = None,
) -> Exchange:
    app = functools.partial(runner.serve, plan, primary=primary, candidate=candidate, names=NAMES)
    return await call(app, scope, [b""] if body is None else body)


def route_results(runner: ShadowRunner) -> dict[str, Any]:
    routes: dict[str, Any] = runner.results.snapshot()["routes"]
    return routes.get(ROUTE, {})


def plan(**options: Any) -> ShadowPlan:
    return ShadowPlan(label=ROUTE, **options)


async def streamed_primary(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 201, "headers": [(b"x-primary", b"yes")]})
    for chunk in (b"one,", b"two,", b"three"):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def test_the_client_gets_the_primary_response_chunk_for_chunk() -> None:
    runner = make_runner()
    candidate = EchoApp("svc")
    exchange = await serve(runner, plan(), gateway_scope(), streamed_primary, candidate)
    assert exchange.status == 201
    assert exchange.headers == {b"x-primary": b"yes"}
    assert [m["body"] for m in exchange.body_messages] == [b"one,", b"two,", b"three", b""]
    await settled(runner)
    assert len(candidate.calls) == 1
    counts = route_results(runner)
    assert (counts["sampled"], counts["mismatches"], counts["matches"]) == (1, 1, 0)


async def test_the_candidate_gets_the_same_request_with_the_body_replayed() -> None:
    runner = make_runner()
    primary, candidate = EchoApp("legacy"), EchoApp("svc")
    headers = [(b"x-custom", b"1"), (b"content-type", b"application/json")]
    scope = gateway_scope("/thing/7", "POST", body_size=7, headers=headers, query=b"a=1&b=2")
    exchange = await serve(
        runner, plan(side_effect_free=True), scope, primary, candidate, [b'{"a":', b"1}"]
    )
    assert exchange.body == b'legacy:{"a":1}'
    await settled(runner)
    [seen] = candidate.calls
    assert (seen.method, seen.path, seen.query) == ("POST", "/thing/7", b"a=1&b=2")
    assert seen.headers == scope["headers"]
    assert seen.body == b'{"a":1}'
    assert primary.calls[0].body == b'{"a":1}'
    assert route_results(runner)["sampled"] == 1


async def test_the_candidate_changes_nothing_the_client_request_shows() -> None:
    runner = make_runner()

    async def meddling(scope: dict[str, Any], receive: Any, send: Any) -> None:
        facts = request_facts(scope)
        facts.rejected = "by the candidate"
        facts.backend = "svc"
        scope["headers"].append((b"x-added", b"1"))
        await answer(send, 200, b"candidate")

    scope = gateway_scope()
    request_facts(scope).decision = FlagDecision("things", "legacy", "shadow")
    await serve(runner, plan(), scope, EchoApp("legacy"), meddling)
    await settled(runner)
    facts = request_facts(scope)
    assert facts.log_fields() == {
        "flag": "things",
        "decision": "legacy",
        "reason": "shadow",
        "shadow": "svc",
    }
    assert facts.backend == "legacy"
    assert (b"x-added", b"1") not in scope["headers"]


async def test_the_candidate_request_state_does_not_leak_into_the_client_scope() -> None:
    runner = make_runner()

    async def sets_state(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["state"]["user"] = "set by the candidate"  # what request.state.user = ... does
        await answer(send, 200, b"candidate")

    scope = gateway_scope()
    await serve(runner, plan(), scope, EchoApp("legacy"), sets_state)
    await settled(runner)
    assert scope["state"] == {}


async def test_an_unsafe_method_is_skipped_and_the_candidate_never_called() -> None:
    runner = make_runner()
    primary, candidate = EchoApp("legacy"), EchoApp("svc")
    scope = gateway_scope(method="POST", body_size=2)
    exchange = await serve(runner, plan(), scope, primary, candidate, [b"{}"])
    assert exchange.body == b"legacy:{}"
    await settled(runner)
    assert candidate.calls == []
    assert route_results(runner)["skipped"] == {"unsafe-method": 1}
    assert route_results(runner)["sampled"] == 0
    assert request_facts(scope).shadow is None


@pytest.mark.parametrize(
    ("sample_rate", "chance", "sampled"),
    [(0.0, 0.0, False), (0.0, 0.5, False), (0.5, 0.49, True), (0.5, 0.5, False), (1.0, 0.99, True)],
)
async def test_sampling(sample_rate: float, chance: float, sampled: bool) -> None:
    runner = make_runner(chance=lambda: chance)
    candidate = EchoApp("svc")
    scope = gateway_scope()
    exchange = await serve(
        runner,
        plan(sample_rate=sample_rate, noise_sample_rate=0),
        scope,
        EchoApp("legacy"),
        candidate,
    )
    assert exchange.body == b"legacy:"
    await settled(runner)
    assert len(candidate.calls) == (1 if sampled else 0)
    if sampled:
        assert route_results(runner)["sampled"] == 1
    else:
        # Not sampled is not skipped: nothing is counted at all.
        assert runner.results.snapshot()["routes"] == {}
        assert request_facts(scope).shadow is None


async def test_past_the_concurrency_cap_a_sample_is_skipped_not_queued() -> None:
    runner = make_runner(max_concurrent=1)
    release, reached = asyncio.Event(), asyncio.Event()
    candidate_calls = 0

    async def blocked(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal candidate_calls
        candidate_calls += 1
        reached.set()
        await release.wait()
        await answer(send, 200, b"legacy:")

    first = await serve(runner, plan(), gateway_scope(), EchoApp("legacy"), blocked)
    await asyncio.wait_for(reached.wait(), timeout=5)
    assert runner.active == 1
    second = await asyncio.wait_for(
        serve(runner, plan(), gateway_scope(), EchoApp("legacy"), blocked), timeout=5
    )
    assert (first.status, second.status, second.body) == (200, 200, b"legacy:")
    release.set()
    await settled(runner)
    assert candidate_calls == 1
    counts = route_results(runner)
    assert counts["skipped"] == {"concurrency": 1}
    assert (counts["sampled"], counts["matches"]) == (1, 1)


@pytest.mark.parametrize(
    ("headers", "chunks"),
    [
        pytest.param([(b"content-length", b"9")], [b"123456789"], id="over-max_body"),
        pytest.param([(b"transfer-encoding", b"chunked")], [b"12", b"34"], id="chunked"),
    ],
)
async def test_a_large_or_chunked_body_is_not_shadowed(
    headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> None:
    runner = make_runner()
    primary, candidate = EchoApp("legacy"), EchoApp("svc")
    scope = gateway_scope(method="PUT", headers=headers)
    shadow_plan = plan(side_effect_free=True, max_body=8)
    exchange = await serve(runner, shadow_plan, scope, primary, candidate, chunks)
    assert exchange.body == b"legacy:" + b"".join(chunks)
    await settled(runner)
    assert candidate.calls == []
    assert route_results(runner)["skipped"] == {"body-too-large": 1}


async def slow_candidate(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await asyncio.sleep(30)


async def raising_candidate(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise RuntimeError("candidate exploded")


async def half_answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"half", "more_body": True})


@pytest.mark.parametrize(
    ("candidate", "error"),
    [
        (slow_candidate, "timeout after 0.05s"),
        (raising_candidate, "RuntimeError: candidate exploded"),
        (half_answer, "incomplete response"),
    ],
)
async def test_a_failing_candidate_is_counted_and_logged(candidate: Any, error: str) -> None:
    runner = make_runner()
    with capture_logs() as logs:
        exchange = await serve(
            runner, plan(timeout=0.05), gateway_scope(), EchoApp("legacy"), candidate
        )
        assert (exchange.status, exchange.body) == (200, b"legacy:")
        await settled(runner)
    counts = route_results(runner)
    assert (counts["sampled"], counts["candidate_errors"], counts["mismatches"]) == (1, 1, 0)
    [failed] = [log for log in logs if log["event"] == "shadow.candidate_failed"]
    assert failed["route"] == ROUTE
    assert failed["error"] == error
    assert failed["log_level"] == "warning"


async def test_a_primary_that_fails_leaves_nothing_to_compare() -> None:
    runner = make_runner()

    async def primary(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("primary broke")

    candidate = EchoApp("svc")
    with pytest.raises(RuntimeError, match="primary broke"):
        await serve(runner, plan(), gateway_scope(), primary, candidate)
    await settled(runner)
    counts = route_results(runner)
    assert counts["skipped"] == {"primary-incomplete": 1}
    assert (counts["matches"], counts["mismatches"]) == (0, 0)


def counting_primary() -> Any:
    """A JSON answer whose ``generated`` field changes on every call."""
    numbers = itertools.count()

    async def primary(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await answer_json(send, {"id": 1, "name": "thing", "generated": next(numbers)})

    return primary


async def steady_candidate(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await answer_json(send, {"id": 1, "name": "thing", "generated": -1})


def chances(*values: float) -> Callable[[], float]:
    values_left: Iterator[float] = iter(values)
    return lambda: next(values_left)


async def test_calibration_learns_noise_and_later_samples_match_as_noisy() -> None:
    # The first sample calibrates (0.0 < noise_sample_rate), the second does not.
    runner = make_runner(chance=chances(0.0, 0.99))
    primary = counting_primary()
    for _ in range(2):
        await serve(runner, plan(noise_sample_rate=0.1), gateway_scope(), primary, steady_candidate)
        await settled(runner)
    counts = route_results(runner)
    assert counts["noise"] == ["/generated"]
    assert counts["calibrations"] == 1
    assert (counts["matches"], counts["noisy"], counts["mismatches"]) == (2, 2, 0)


async def test_without_calibration_the_volatile_field_is_a_mismatch() -> None:
    runner = make_runner()
    await serve(
        runner, plan(noise_sample_rate=0), gateway_scope(), counting_primary(), steady_candidate
    )
    await settled(runner)
    counts = route_results(runner)
    assert (counts["noise"], counts["calibrations"]) == ([], 0)
    assert (counts["matches"], counts["mismatches"]) == (0, 1)


async def test_learned_noise_does_not_hide_a_real_difference() -> None:
    runner = make_runner(chance=chances(0.0, 0.99))
    primary = counting_primary()

    async def renamed(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await answer_json(send, {"id": 1, "name": "Thing", "generated": -1})

    for _ in range(2):
        await serve(runner, plan(), gateway_scope(), primary, renamed)
        await settled(runner)
    counts = route_results(runner)
    assert counts["noise"] == ["/generated"]
    assert (counts["matches"], counts["mismatches"]) == (0, 2)
    pointers = [
        [d["pointer"] for d in m["differences"]] for m in runner.results.snapshot()["recent"]
    ]
    assert pointers == [["/name"], ["/name"]]


async def test_recent_mismatches_are_bounded_by_keep() -> None:
    runner = make_runner(keep=2)
    for number in range(3):
        scope = gateway_scope(request_id=f"req-{number}")
        await serve(runner, plan(), scope, EchoApp("legacy"), EchoApp("svc"))
        await settled(runner)
    snapshot = runner.results.snapshot()
    assert snapshot["routes"][ROUTE]["mismatches"] == 3
    assert [m["request_id"] for m in snapshot["recent"]] == ["req-1", "req-2"]


async def test_a_mismatch_keeps_no_query_string_and_no_secret_values() -> None:
    runner = make_runner()

    async def primary(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await answer_json(send, {"token": "primary-secret-value", "count": 1})

    async def candidate(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await answer_json(send, {"token": "candidate-secret-value", "count": 2})

    scope = gateway_scope("/thing/1", query=b"token=query-secret", request_id="req-m")
    with capture_logs() as logs:
        await serve(runner, plan(), scope, primary, candidate)
        await settled(runner)
    [mismatch] = runner.results.recent
    record = asdict(mismatch)
    assert {k: v for k, v in record.items() if k not in ("at", "differences")} == {
        "request_id": "req-m",
        "route": ROUTE,
        "method": "GET",
        "path": "/thing/1",
        "primary": "legacy",
        "candidate": "svc",
        "primary_status": 200,
        "candidate_status": 200,
    }
    assert {d["pointer"]: (d["primary"], d["candidate"]) for d in record["differences"]} == {
        "/count": ("1", "2"),
        "/token": ("[redacted]", "[redacted]"),
    }
    logged = json.dumps([log for log in logs if log["event"] == "shadow.mismatch"])
    for text in (json.dumps(record), logged):
        assert "secret" not in text
    assert "shadow.mismatch" in logged


async def test_the_cap_holds_while_request_bodies_are_still_arriving() -> None:
    runner = make_runner(max_concurrent=1)
    bodies_arrive, release = asyncio.Event(), asyncio.Event()
    candidate_calls = 0

    async def slow_upload() -> dict[str, Any]:
        await bodies_arrive.wait()
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def blocked(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal candidate_calls
        candidate_calls += 1
        await release.wait()
        await answer(send, 200, b"legacy:{}")

    async def client() -> Exchange:
        exchange = Exchange()

        async def send(message: dict[str, Any]) -> None:
            exchange.messages.append(message)

        scope = gateway_scope(method="POST", body_size=2)
        await runner.serve(
            plan(side_effect_free=True),
            scope,
            slow_upload,
            send,
            primary=EchoApp("legacy"),
            candidate=blocked,
            names=NAMES,
        )
        return exchange

    clients = [asyncio.create_task(client()) for _ in range(2)]
    await asyncio.sleep(0.01)  # both are reading their bodies now
    bodies_arrive.set()
    answers = await asyncio.wait_for(asyncio.gather(*clients), timeout=5)
    assert [a.body for a in answers] == [b"legacy:{}", b"legacy:{}"]
    try:
        assert runner.active == 1
        assert route_results(runner)["skipped"] == {"concurrency": 1}
    finally:
        release.set()
        await settled(runner)
    assert candidate_calls == 1


async def test_a_calibration_never_learns_noise_from_a_fallback_answer() -> None:
    new_calls = 0

    async def flaky_new(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal new_calls
        new_calls += 1
        if new_calls == 1:
            await answer_json(send, {"id": 1, "name": "Thing"})
        else:
            await answer_json(send, {"error": "overloaded"}, status=503)

    async def legacy(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await answer_json(send, {"id": 1, "name": "thing"})

    # What the dispatcher passes for a flagged route with fallback and primary = "new".
    guarded = GuardedService(flaky_new, legacy=legacy, label=ROUTE, fallback=True)
    runner = make_runner(chance=lambda: 0.0)  # calibrate every sample
    app = functools.partial(
        runner.serve,
        plan(primary="new", noise_sample_rate=1.0),
        primary=guarded,
        candidate=legacy,
        names=("svc", "legacy"),
        calibrate_with=flaky_new,  # the bare service, as the dispatcher passes it
    )
    scope = gateway_scope()
    scope[FACTS_KEY].backend = "svc"  # as the dispatcher leaves it for a new-side primary
    exchange = await call(app, scope, [b""])
    assert json.loads(exchange.body) == {"id": 1, "name": "Thing"}
    await settled(runner)
    assert new_calls == 2  # the calibration asked the new side again, and it failed
    counts = route_results(runner)
    assert (counts["mismatches"], counts["noisy"]) == (1, 0)
    assert "/name" not in counts["noise"]
