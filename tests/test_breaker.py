"""The circuit breaker on a fake clock, and the guards around five-line ASGI apps."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from shadow_unit_apps import EchoApp, answer, gateway_scope, hang_forever, read_all
from structlog.testing import capture_logs
from support import call

from gateway.context import request_facts
from gateway.resilience import Breaker, GuardedService


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_breaker(
    clock: FakeClock, *, failures: int = 3, window: float = 10.0, cooldown: float = 30.0
) -> Breaker:
    return Breaker("GET /thing", failures=failures, window=window, cooldown=cooldown, clock=clock)


def fail(breaker: Breaker, times: int = 1) -> None:
    for _ in range(times):
        admission = breaker.admit()
        assert admission == "closed"
        breaker.record(admission, False)


def open_breaker(clock: FakeClock, **options: Any) -> Breaker:
    breaker = make_breaker(clock, **options)
    fail(breaker, options.get("failures", 3))
    assert breaker.state == "open"
    return breaker


# --- The breaker alone -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure_times", "state"),
    [
        ([0, 1, 2], "open"),
        ([0, 9.9, 9.95], "open"),
        ([0, 1], "closed"),
        # The oldest failure leaves the window exactly ``window`` seconds later.
        ([0, 5, 10], "closed"),
        ([0, 11, 22, 33], "closed"),
        ([0, 11, 12, 13], "open"),
    ],
)
def test_opens_after_n_failures_within_the_window(failure_times: list[float], state: str) -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, failures=3, window=10.0)
    start = clock.now
    for at in failure_times:
        clock.now = start + at
        fail(breaker)
    assert breaker.state == state
    assert breaker.trips == (1 if state == "open" else 0)


def test_successes_neither_count_nor_forgive() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, failures=3)
    for _ in range(50):
        admission = breaker.admit()
        assert admission == "closed"
        breaker.record(admission, True)
    assert breaker.view() == {"state": "closed", "trips": 0, "recent_failures": 0}
    fail(breaker, 2)
    breaker.record("closed", True)
    assert breaker.view()["recent_failures"] == 2
    fail(breaker)
    assert breaker.state == "open"


def test_open_refuses_until_the_cooldown_is_over() -> None:
    clock = FakeClock()
    breaker = open_breaker(clock, cooldown=30.0)
    assert breaker.view() == {"state": "open", "trips": 1, "retry_in": 30.0}
    clock.now += 12.34
    assert breaker.admit() is None
    assert breaker.view() == {"state": "open", "trips": 1, "retry_in": 17.7}
    clock.now += 30.0 - 12.34 - 0.01
    assert breaker.admit() is None
    assert breaker.state == "open"
    clock.now += 0.01
    assert breaker.admit() == "trial"
    assert breaker.state == "half-open"


def test_failures_reported_after_opening_do_not_count_later() -> None:
    # Requests admitted while it was closed can finish after it opened.
    clock = FakeClock()
    breaker = open_breaker(clock)
    breaker.record("closed", False)
    breaker.record("closed", False)
    clock.now += 30
    trial = breaker.admit()
    assert trial == "trial"
    breaker.record(trial, True)
    assert breaker.view() == {"state": "closed", "trips": 1, "recent_failures": 0}


def test_half_open_admits_exactly_one_trial() -> None:
    clock = FakeClock()
    breaker = open_breaker(clock)
    clock.now += 30
    admissions = [breaker.admit() for _ in range(5)]
    assert admissions == ["trial", None, None, None, None]
    assert breaker.view() == {"state": "half-open", "trips": 1, "recent_failures": 0}


def test_a_successful_trial_closes_and_forgets_the_failures() -> None:
    clock = FakeClock()
    breaker = open_breaker(clock, failures=3)
    clock.now += 30
    trial = breaker.admit()
    assert trial == "trial"
    breaker.record(trial, True)
    assert breaker.state == "closed"
    assert breaker.admit() == "closed"
    fail(breaker, 2)
    assert breaker.state == "closed"
    fail(breaker)
    assert breaker.state == "open"
    assert breaker.trips == 2


def test_a_failed_trial_reopens_with_a_fresh_cooldown() -> None:
    clock = FakeClock()
    breaker = open_breaker(clock, cooldown=30.0)
    clock.now += 45  # well past the first cooldown
    trial = breaker.admit()
    assert trial == "trial"
    breaker.record(trial, False)
    assert breaker.view() == {"state": "open", "trips": 2, "retry_in": 30.0}
    clock.now += 29.9
    assert breaker.admit() is None
    clock.now += 0.1
    assert breaker.admit() == "trial"


def test_a_cancelled_trial_lets_the_next_request_be_the_trial() -> None:
    clock = FakeClock()
    breaker = open_breaker(clock)
    clock.now += 30
    trial = breaker.admit()
    assert trial == "trial"
    assert breaker.admit() is None
    breaker.record(trial, None)
    assert breaker.state == "half-open"
    assert breaker.trips == 1
    assert breaker.admit() == "trial"
    assert breaker.admit() is None


def test_changes_count_every_change_of_state_and_trips_every_opening() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, failures=1, cooldown=5)
    assert (breaker.changes, breaker.trips) == (0, 0)
    fail(breaker)  # closed -> open
    assert (breaker.changes, breaker.trips) == (1, 1)
    clock.now += 5
    trial = breaker.admit()  # open -> half-open
    assert trial == "trial"
    assert (breaker.changes, breaker.trips) == (2, 1)
    breaker.record(trial, False)  # half-open -> open
    assert (breaker.changes, breaker.trips) == (3, 2)
    clock.now += 5
    trial = breaker.admit()  # open -> half-open
    assert trial == "trial"
    breaker.record(trial, True)  # half-open -> closed
    assert (breaker.changes, breaker.trips) == (5, 2)
    breaker.record("closed", True)
    assert breaker.changes == 5


def test_state_changes_are_logged() -> None:
    clock = FakeClock()
    with capture_logs() as logs:
        breaker = open_breaker(clock, failures=3, window=10.0, cooldown=30.0)
        clock.now += 30
        trial = breaker.admit()
        assert trial == "trial"
        breaker.record(trial, True)
    events = [(log["event"], log["log_level"], log["route"]) for log in logs]
    assert events == [
        ("breaker.opened", "warning", "GET /thing"),
        ("breaker.half_open", "info", "GET /thing"),
        ("breaker.closed", "info", "GET /thing"),
    ]
    assert logs[0]["why"] == "3 failures in 10s"
    assert logs[0]["cooldown"] == 30.0


# --- GuardedService around five-line apps ---------------------------------------------------------


async def raising(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await read_all(receive)
    raise RuntimeError("new side exploded")


async def failing_500(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await read_all(receive)
    await answer(send, 500, b'{"error":"broken"}', b"application/json")


async def ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await answer(send, 200, b"new")


SERVICES = {"raise": raising, "500": failing_500, "hang": hang_forever, "ok": ok}


def guard(service: Any, legacy: Any, **options: Any) -> GuardedService:
    return GuardedService(service, legacy=legacy, label="GET /thing", **options)


@pytest.mark.parametrize(
    ("method", "kind", "fallback"),
    [
        ("GET", "raise", "error"),
        ("GET", "500", "status-500"),
        ("GET", "hang", "timeout"),
        ("HEAD", "500", "status-500"),
        ("DELETE", "raise", "error"),
        ("OPTIONS", "hang", "timeout"),
        ("PUT", "500", "status-500"),
    ],
)
@pytest.mark.anyio
async def test_a_failing_new_side_falls_back_to_legacy_for_idempotent_methods(
    method: str, kind: str, fallback: str
) -> None:
    legacy = EchoApp("legacy")
    scope = gateway_scope(method=method)
    exchange = await call(guard(SERVICES[kind], legacy, timeout=0.05, fallback=True), scope)
    assert (exchange.status, exchange.body) == (200, b"legacy:")
    assert exchange.complete
    facts = request_facts(scope)
    assert facts.log_fields() == {"failure": fallback, "fallback": fallback}
    assert facts.backend == "legacy"
    assert len(legacy.calls) == 1


@pytest.mark.anyio
async def test_a_put_body_is_replayed_intact_to_legacy() -> None:
    legacy = EchoApp("legacy")
    new_side_got: list[bytes] = []

    async def reads_then_fails(scope: dict[str, Any], receive: Any, send: Any) -> None:
        new_side_got.append(await read_all(receive))
        await answer(send, 503, b"down")

    scope = gateway_scope(method="PUT", body_size=11)
    exchange = await call(
        guard(reads_then_fails, legacy, fallback=True), scope, [b"hello ", b"world"]
    )
    assert new_side_got == [b"hello world"]
    assert (exchange.status, exchange.body) == (200, b"legacy:hello world")
    assert [m["type"] for m in exchange.messages] == ["http.response.start", "http.response.body"]
    assert legacy.calls[0].method == "PUT"
    assert request_facts(scope).log_fields() == {"failure": "status-503", "fallback": "status-503"}


NO_FALLBACK = [
    # (method, body chunks, extra headers, fallback_max_body)
    pytest.param("POST", [b"{}"], [], 1024, id="post"),
    pytest.param("PUT", [b"x" * 11], [], 10, id="body-over-fallback_max_body"),
    pytest.param("PUT", [b"abc", b"def"], [(b"transfer-encoding", b"chunked")], 1024, id="chunked"),
]


@pytest.mark.parametrize(("method", "chunks", "headers", "max_body"), NO_FALLBACK)
@pytest.mark.anyio
async def test_without_a_possible_fallback_the_5xx_reaches_the_client(
    method: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]], max_body: int
) -> None:
    legacy = EchoApp("legacy")
    size = None if headers else sum(map(len, chunks))
    scope = gateway_scope(method=method, body_size=size, headers=headers)
    service = guard(failing_500, legacy, fallback=True, fallback_max_body=max_body)
    exchange = await call(service, scope, chunks)
    assert (exchange.status, exchange.body) == (500, b'{"error":"broken"}')
    assert legacy.calls == []
    facts = request_facts(scope)
    assert facts.log_fields() == {"failure": "status-500"}
    assert facts.backend == "legacy"  # untouched: the dispatcher sets it, not the guard


@pytest.mark.parametrize(("method", "chunks", "headers", "max_body"), NO_FALLBACK)
@pytest.mark.anyio
async def test_without_a_possible_fallback_an_exception_propagates(
    method: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]], max_body: int
) -> None:
    legacy = EchoApp("legacy")
    size = None if headers else sum(map(len, chunks))
    scope = gateway_scope(method=method, body_size=size, headers=headers)
    service = guard(raising, legacy, fallback=True, fallback_max_body=max_body)
    with pytest.raises(RuntimeError, match="new side exploded"):
        await call(service, scope, chunks)
    assert legacy.calls == []


@pytest.mark.anyio
async def test_a_timeout_without_fallback_answers_504_with_the_request_id() -> None:
    legacy = EchoApp("legacy")
    scope = gateway_scope(request_id="req-504")
    exchange = await asyncio.wait_for(
        call(guard(hang_forever, legacy, timeout=0.05), scope), timeout=5
    )
    assert exchange.status == 504
    assert exchange.headers[b"content-type"] == b"application/json"
    assert json.loads(exchange.body) == {
        "error": {"status": 504, "message": "the service did not answer in time"},
        "request_id": "req-504",
    }
    assert request_facts(scope).log_fields() == {"failure": "timeout"}
    assert legacy.calls == []


@pytest.mark.anyio
async def test_a_stream_that_breaks_after_its_first_chunk_is_not_retried() -> None:
    legacy = EchoApp("legacy")

    async def breaks_mid_stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
        raise RuntimeError("stream broke")

    scope = gateway_scope()
    exchange_messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        exchange_messages.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    service = guard(breaks_mid_stream, legacy, timeout=1.0, fallback=True)
    with pytest.raises(RuntimeError, match="stream broke"):
        await service(scope, receive, send)
    assert [m.get("body") for m in exchange_messages] == [None, b"half"]
    assert exchange_messages[0]["status"] == 200
    assert legacy.calls == []
    assert "fallback" not in request_facts(scope).log_fields()


@pytest.mark.parametrize("fallback", [True, False])
@pytest.mark.anyio
async def test_the_timeout_runs_only_until_the_first_byte(fallback: bool) -> None:
    legacy = EchoApp("legacy")

    async def slow_stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first ", "more_body": True})
        await asyncio.sleep(0.3)  # six times the timeout
        await send({"type": "http.response.body", "body": b"second"})

    scope = gateway_scope()
    exchange = await call(guard(slow_stream, legacy, timeout=0.05, fallback=fallback), scope)
    assert (exchange.status, exchange.body) == (200, b"first second")
    assert exchange.complete
    assert request_facts(scope).log_fields() == {}
    assert legacy.calls == []


@pytest.mark.anyio
async def test_a_healthy_new_side_is_passed_through() -> None:
    legacy = EchoApp("legacy")
    scope = gateway_scope()
    exchange = await call(guard(ok, legacy, timeout=1.0, fallback=True), scope)
    assert (exchange.status, exchange.body) == (200, b"new")
    assert request_facts(scope).log_fields() == {}
    assert legacy.calls == []


@pytest.mark.anyio
async def test_an_open_breaker_sends_the_route_to_legacy_and_a_trial_closes_it() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, failures=2, cooldown=30)
    legacy = EchoApp("legacy")
    calls: list[str] = []

    async def flaky(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        if len(calls) <= 2:
            await answer(send, 502, b"bad gateway")
        else:
            await ok(scope, receive, send)

    service = guard(flaky, legacy, fallback=True, breaker=breaker)
    for _ in range(2):
        scope = gateway_scope()
        exchange = await call(service, scope)
        assert exchange.body == b"legacy:"
        assert request_facts(scope).log_fields() == {
            "failure": "status-502",
            "fallback": "status-502",
        }
    assert breaker.state == "open"

    scope = gateway_scope()
    exchange = await call(service, scope, [b""])  # legacy reads the client's own receive
    assert (exchange.status, exchange.body) == (200, b"legacy:")
    assert request_facts(scope).log_fields() == {"breaker": "open"}
    assert request_facts(scope).backend == "legacy"
    assert len(calls) == 2  # the new side was not asked

    clock.now += 30
    scope = gateway_scope()
    exchange = await call(service, scope)
    assert (exchange.status, exchange.body) == (200, b"new")
    assert request_facts(scope).log_fields() == {"breaker": "trial"}
    assert breaker.state == "closed"


@pytest.mark.anyio
async def test_a_5xx_without_fallback_still_counts_for_the_breaker() -> None:
    breaker = make_breaker(FakeClock(), failures=2)
    service = guard(failing_500, EchoApp("legacy"), breaker=breaker)
    for _ in range(2):
        exchange = await call(service, gateway_scope(), [b""])
        assert exchange.status == 500
    assert breaker.state == "open"


@pytest.mark.anyio
async def test_a_trial_cancelled_with_its_request_leaves_the_next_one_the_trial() -> None:
    clock = FakeClock()
    breaker = open_breaker(clock, failures=1)
    clock.now += 30
    started = asyncio.Event()

    async def stalls(scope: dict[str, Any], receive: Any, send: Any) -> None:
        started.set()
        await asyncio.sleep(60)

    service = guard(stalls, EchoApp("legacy"), breaker=breaker)
    task = asyncio.create_task(call(service, gateway_scope()))
    await asyncio.wait_for(started.wait(), timeout=5)
    assert breaker.admit() is None  # the trial is running
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state == "half-open"
    assert breaker.admit() == "trial"
