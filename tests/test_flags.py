"""Flag decisions: bucketing pinned to Unleash, stickiness, monotonic rollout, precedence."""

from __future__ import annotations

import mmh3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from gateway.context import ANONYMOUS, Identity
from gateway.flags.evaluate import FlagInput, bucket, evaluate
from gateway.flags.model import FlagSpec, FlagState
from gateway.flags.runtime import FlagRuntime
from gateway.flags.stores import FlagStore, StoreUnavailable
from gateway.storage.memory import MemoryStorage

pytestmark = pytest.mark.anyio

ALICE = Identity("alice", frozenset({"admin"}), "session")
BOB = Identity("bob", frozenset({"user"}), "jwt")
QA = Identity("quinn", frozenset({"qa"}), "session")


@pytest.mark.parametrize(
    ("flag", "key", "expected"),
    [
        # The cross-client reference values from Unleash's own test suite.
        ("gr1", "123", 73),
        ("groupX", "999", 25),
    ],
)
def test_bucket_matches_unleash(flag: str, key: str, expected: int) -> None:
    assert bucket(flag, key) == expected


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=40))
def test_bucket_is_murmur3_of_flag_and_key(flag: str, key: str) -> None:
    number = bucket(flag, key)
    assert number == mmh3.hash(f"{flag}:{key}".encode(), 0, signed=False) % 100 + 1
    assert 1 <= number <= 100


def canary(percentage: int, **targeting: frozenset[str]) -> FlagSpec:
    return FlagSpec(mode="canary", percentage=percentage, **targeting)


@settings(max_examples=300)
@given(
    subject=st.text(min_size=1, max_size=30),
    low=st.integers(0, 100),
    high=st.integers(0, 100),
)
def test_raising_the_percentage_never_moves_anyone_back(subject: str, low: int, high: int) -> None:
    low, high = min(low, high), max(low, high)
    identity = Identity(subject, frozenset(), "jwt")
    before = evaluate(FlagInput("f", canary(low), identity), kill_switch=False)
    after = evaluate(FlagInput("f", canary(high), identity), kill_switch=False)
    if before.side == "new":
        assert after.side == "new"
    # Sticky: the same inputs always give the same answer.
    assert evaluate(FlagInput("f", canary(low), identity), kill_switch=False) == before


def test_percentage_splits_the_population() -> None:
    sides = [
        evaluate(FlagInput("catalog-books", canary(30), Identity(f"user-{i}")), kill_switch=False)
        for i in range(10_000)
    ]
    share = sum(decision.side == "new" for decision in sides) / len(sides)
    assert 0.28 < share < 0.32
    assert {decision.reason for decision in sides} == {"split"}
    assert evaluate(FlagInput("f", canary(0), ALICE), kill_switch=False).side == "legacy"
    assert evaluate(FlagInput("f", canary(100), ALICE), kill_switch=False).side == "new"


def test_anonymous_callers_bucket_by_fallback_key_or_stay_on_legacy() -> None:
    spec = canary(100)
    by_address = evaluate(FlagInput("f", spec, ANONYMOUS, "10.0.0.7"), kill_switch=False)
    assert (by_address.side, by_address.reason) == ("new", "split")
    assert by_address.bucket == bucket("f", "10.0.0.7")
    nobody = evaluate(FlagInput("f", spec, ANONYMOUS, None), kill_switch=False)
    assert (nobody.side, nobody.reason) == ("legacy", "no-bucket-key")


@pytest.mark.parametrize(
    ("spec", "identity", "override", "kill", "side", "reason"),
    [
        (FlagSpec(mode="legacy"), ALICE, None, False, "legacy", "default"),
        (FlagSpec(mode="new"), ALICE, None, False, "new", "default"),
        (FlagSpec(mode="shadow"), ALICE, None, False, "legacy", "shadow"),
        # Targeting beats the mode and the percentage; deny beats allow.
        (
            FlagSpec(mode="legacy", allow_subjects=frozenset({"alice"})),
            ALICE,
            None,
            False,
            "new",
            "targeting",
        ),
        (
            canary(100, deny_subjects=frozenset({"alice"})),
            ALICE,
            None,
            False,
            "legacy",
            "targeting",
        ),
        (canary(0, allow_roles=frozenset({"user"})), BOB, None, False, "new", "targeting"),
        (canary(100, deny_roles=frozenset({"admin"})), ALICE, None, False, "legacy", "targeting"),
        (
            FlagSpec(allow_subjects=frozenset({"alice"}), deny_roles=frozenset({"admin"})),
            ALICE,
            None,
            False,
            "legacy",
            "targeting",
        ),
        # Targeting never applies to anonymous callers.
        (
            FlagSpec(mode="legacy", allow_roles=frozenset({"user"})),
            ANONYMOUS,
            None,
            False,
            "legacy",
            "default",
        ),
        # An (authorised) override beats targeting and the mode...
        (canary(100, deny_subjects=frozenset({"quinn"})), QA, "new", False, "new", "override"),
        (FlagSpec(mode="new"), QA, "legacy", False, "legacy", "override"),
        # ...and the kill switch beats everything.
        (FlagSpec(mode="new"), QA, "new", True, "legacy", "kill-switch"),
        (
            FlagSpec(mode="new", allow_subjects=frozenset({"alice"})),
            ALICE,
            None,
            True,
            "legacy",
            "kill-switch",
        ),
    ],
)
def test_precedence(
    spec: FlagSpec, identity: Identity, override: str | None, kill: bool, side: str, reason: str
) -> None:
    decision = evaluate(FlagInput("f", spec, identity, "10.0.0.1", override), kill_switch=kill)  # type: ignore[arg-type]
    assert (decision.side, decision.reason) == (side, reason)


def memory_store() -> FlagStore:
    return FlagStore(MemoryStorage())


def runtime(defaults: dict[str, FlagSpec], store: FlagStore | None = None) -> FlagRuntime:
    return FlagRuntime(defaults=defaults, store=store or memory_store(), override_roles=["qa"])


@pytest.mark.parametrize(
    ("identity", "header", "side", "reason", "ignored"),
    [
        (QA, b"new", "new", "override", False),
        (QA, b" Legacy ", "legacy", "override", False),
        (QA, b"sideways", "legacy", "default", True),  # not a side: ignored
        (BOB, b"new", "legacy", "default", True),  # not QA: ignored and logged
        (ALICE, b"new", "legacy", "default", True),  # admin is not QA either
        (ANONYMOUS, b"new", "legacy", "default", True),
    ],
)
async def test_only_qa_can_override(
    identity: Identity, header: bytes, side: str, reason: str, ignored: bool
) -> None:
    flags = runtime({"f": FlagSpec(mode="legacy")})
    await flags.start()
    with capture_logs() as logs:
        decision = flags.evaluate("f", identity, "10.0.0.1", header)
    await flags.stop()
    assert (decision.side, decision.reason) == (side, reason)
    assert ("flags.override_ignored" in [log["event"] for log in logs]) is ignored


async def test_store_state_wins_over_defaults_and_changes_apply_at_once() -> None:
    store = memory_store()
    await store.update(
        lambda state: state.model_copy(update={"flags": {"f": FlagSpec(mode="new")}})
    )
    flags = runtime({"f": FlagSpec(mode="legacy"), "g": FlagSpec(mode="new")}, store)
    await flags.start()
    assert flags.evaluate("f", ALICE, None).side == "new"
    assert flags.view()["flags"]["f"]["source"] == "store"
    assert flags.view()["flags"]["g"]["source"] == "default"
    with capture_logs() as logs:
        await flags.update(
            lambda state: state.model_copy(update={"kill_switch": True}), actor="alice"
        )
    assert flags.evaluate("f", ALICE, None).reason == "kill-switch"
    changes = [log for log in logs if log["event"] == "flags.changed"]
    assert changes == [
        {
            "event": "flags.changed",
            "log_level": "warning",
            "actor": "alice",
            "flag": "*kill-switch*",
            "old": False,
            "new": True,
            "store": "memory",
        }
    ]
    await flags.stop()


async def test_a_stale_read_right_after_a_local_write_is_ignored() -> None:
    store = memory_store()
    flags = runtime({"f": FlagSpec()}, store)
    await flags.start()
    for _ in range(5):
        await flags.update(lambda state: state, actor="test")
    await flags.update(
        lambda s: s.model_copy(update={"flags": {"f": FlagSpec(mode="new")}}), actor="t"
    )
    flags.apply(FlagState(version=4, flags={"f": FlagSpec(mode="legacy")}))  # read before the write
    assert flags.evaluate("f", ALICE, None).side == "new"
    assert flags.view()["version"] == 6
    await flags.stop()


async def test_a_reset_store_is_believed() -> None:
    # No local write: a lower version means the store started again (Redis without persistence).
    flags = runtime({"f": FlagSpec()})
    flags.apply(FlagState(version=7, flags={"f": FlagSpec(mode="new")}))
    flags.apply(FlagState(version=1, kill_switch=True))
    assert flags.evaluate("f", ALICE, None).reason == "kill-switch"


class UnreachableStore(FlagStore):
    def __init__(self) -> None:
        super().__init__(MemoryStorage())
        self.description = "unreachable"

    async def load(self) -> FlagState | None:
        raise StoreUnavailable("connection refused")


async def test_unreachable_store_serves_defaults_and_says_so() -> None:
    flags = runtime({"f": canary(100)}, UnreachableStore())
    with capture_logs() as logs:
        await flags.start()
    decision = flags.evaluate("f", ALICE, None)
    assert (decision.side, decision.reason) == ("new", "store-unavailable")
    assert [log["event"] for log in logs] == ["flags.store_unavailable"]
    # Once the store answers (its watcher delivers a state), decisions are normal again.
    flags.apply(FlagState(version=1))
    assert flags.evaluate("f", ALICE, None).reason == "split"
    await flags.stop()
