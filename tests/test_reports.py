"""Worker reports: in the file and Redis backends, the publisher, and adding reports up.

Redis tests use the server on 127.0.0.1:6379 (skipped when none answers), each under a key prefix
of its own whose keys are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs
from support import needs_redis

from gateway.reports import (
    STALE_AFTER,
    ReportPublisher,
    ReportStore,
    combine_reports,
    worker_id,
)
from gateway.storage.file import FileStorage
from gateway.storage.memory import MemoryStorage
from gateway.storage.redis import RedisStorage

pytestmark = pytest.mark.anyio

REDIS_URL = "redis://127.0.0.1:6379/0"


def report(worker: str, *, age: float = 0.0, **fields: Any) -> dict[str, Any]:
    return {"worker": worker, "updated": time.time() - age, **fields}


def file_reports(directory: Path) -> ReportStore:
    return ReportStore(FileStorage(directory.parent / "flags.json", reports=directory))


# --- the file backend ----------------------------------------------------------------------------


async def test_file_store_round_trip(tmp_path: Path) -> None:
    store = ReportStore(FileStorage(tmp_path / "flags.json"))  # reports next to the flags
    assert store.description == f"file:{tmp_path / 'reports'}"
    assert await store.read() == []  # no folder yet
    one, two = report("host-a:1", shadow={"n": 1}), report("host-b:2", breakers={})
    await store.publish("host-a:1", one)
    await store.publish("host-b:2", two)
    await store.publish("host-a:1", one | {"shadow": {"n": 2}})  # replaces its own report
    reports = sorted(await store.read(), key=lambda r: r["worker"])
    assert reports == [one | {"shadow": {"n": 2}}, two]
    await store.remove("host-a:1")
    await store.remove("host-a:1")  # removing twice is fine
    assert await store.read() == [two]
    # A worker id with ':' and '/' still makes one file inside the folder.
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["host-b-2.json"]


async def test_file_store_leaves_out_stale_reports(tmp_path: Path) -> None:
    store = file_reports(tmp_path)
    fresh = report("w:1", age=STALE_AFTER - 5)
    await store.publish("w:1", fresh)
    await store.publish("w:2", report("w:2", age=STALE_AFTER + 1))
    await store.publish("w:3", {"worker": "w:3"})  # no timestamp at all
    await store.publish("w:4", report("w:4") | {"updated": "yesterday"})
    assert await store.read() == [fresh]


@pytest.mark.parametrize(
    "content",
    [b'{"worker": "w:9", "updat', b"\xff\xfe not json", b"", b"[1, 2]", b'"a string"', b"null"],
)
async def test_file_store_ignores_half_written_and_garbage_files(
    tmp_path: Path, content: bytes
) -> None:
    store = file_reports(tmp_path)
    good = report("w:1")
    await store.publish("w:1", good)
    (tmp_path / "w-9.json").write_bytes(content)
    (tmp_path / ".w-1.json.abc.tmp").write_bytes(b"{")  # a publish in progress
    assert await store.read() == [good]


# --- the Redis backend ---------------------------------------------------------------------------


@pytest.fixture
async def redis_store() -> AsyncIterator[ReportStore]:
    key = f"gateway-test:{uuid.uuid4().hex}"
    store = ReportStore(RedisStorage(REDIS_URL, key=key))
    try:
        yield store
    finally:
        await store.close()
        with redis.Redis.from_url(REDIS_URL) as client:
            keys = list(client.scan_iter(match=key + "*"))
            if keys:
                client.delete(*keys)


@needs_redis
async def test_redis_store_round_trip(redis_store: ReportStore) -> None:
    assert await redis_store.read() == []
    one, two = report("host-a:1", shadow={"n": 1}), report("host-b:2")
    await redis_store.publish("host-a:1", one)
    await redis_store.publish("host-b:2", two)
    reports = sorted(await redis_store.read(), key=lambda r: r["worker"])
    assert reports == [one, two]
    await redis_store.remove("host-a:1")
    assert await redis_store.read() == [two]


@needs_redis
async def test_redis_store_reports_expire_and_stale_or_garbage_ones_are_left_out(
    redis_store: ReportStore,
) -> None:
    fresh = report("w:1")
    await redis_store.publish("w:1", fresh)
    await redis_store.publish("w:2", report("w:2", age=STALE_AFTER + 1))
    assert isinstance(redis_store.storage, RedisStorage)
    prefix = redis_store.storage.reports_prefix
    assert redis_store.description.endswith(f"keys {prefix}*")
    with redis.Redis.from_url(REDIS_URL) as client:
        client.set(prefix + "w:3", b"{half")
        client.set(prefix + "w:4", b"[1]")
        ttl = client.ttl(prefix + "w:1")
    assert 0 < ttl <= STALE_AFTER  # a dead worker's report goes away by itself
    assert await redis_store.read() == [fresh]


# --- ReportPublisher -----------------------------------------------------------------------------


class BrokenStore(ReportStore):
    def __init__(self) -> None:
        super().__init__(MemoryStorage())
        self.description = "broken test store"

    async def read(self) -> list[dict[str, Any]]:
        raise ConnectionError("store unreachable")


async def test_read_all_puts_this_worker_first_then_the_others(tmp_path: Path) -> None:
    store = file_reports(tmp_path)
    publisher = ReportPublisher(store, build=lambda: {"shadow": {"mine": True}}, version=lambda: 0)
    other = report("other-host:7", shadow={"mine": False})
    await store.publish("other-host:7", other)
    # A stale copy of this worker's own report is replaced by the live one.
    await store.publish(publisher.worker, report(publisher.worker, shadow={"mine": "old"}))
    before = time.time()
    reports = await publisher.read_all()
    assert [r["worker"] for r in reports] == [worker_id(), "other-host:7"]
    assert reports[0]["shadow"] == {"mine": True}
    assert reports[0]["updated"] >= before
    assert reports[1] == other


async def test_read_all_survives_a_store_that_fails() -> None:
    publisher = ReportPublisher(BrokenStore(), build=lambda: {"breakers": {}}, version=lambda: 0)
    with capture_logs() as logs:
        reports = await publisher.read_all()
    assert [r["worker"] for r in reports] == [worker_id()]
    [warning] = [log for log in logs if log["event"] == "reports.read_failed"]
    assert warning["store"] == "broken test store"
    assert "store unreachable" in warning["error"]


async def test_publisher_publishes_and_removes_its_report_when_it_stops(tmp_path: Path) -> None:
    store = file_reports(tmp_path)
    version = 0
    publisher = ReportPublisher(
        store, build=lambda: {"version": version}, version=lambda: version, interval=0.01
    )
    await publisher.start()
    try:

        async def published(expected: int) -> None:
            while [r.get("version") for r in await store.read()] != [expected]:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(published(0), timeout=5)
        version = 1
        await asyncio.wait_for(published(1), timeout=5)
    finally:
        await publisher.stop()
    assert await store.read() == []
    assert list(tmp_path.iterdir()) == []


# --- combine_reports -----------------------------------------------------------------------------


def shadow(route_counts: dict[str, Any], recent: list[dict[str, Any]]) -> dict[str, Any]:
    return {"routes": route_counts, "recent": recent}


def counts(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(
        ("sampled", "matches", "mismatches", "noisy", "candidate_errors", "calibrations"), 0
    )
    return row | {"skipped": {}, "noise": []} | values


def test_combine_reports_adds_up_workers() -> None:
    a = report(
        "w:a",
        shadow=shadow(
            {
                "GET /x": counts(sampled=3, matches=2, mismatches=1, noise=["/b", "/a"]),
                "GET /only-a": counts(sampled=1, skipped={"concurrency": 2}),
            },
            [{"at": 10.0, "request_id": "a1"}, {"at": 30.0, "request_id": "a2"}],
        ),
        breakers={"GET /x": {"state": "closed", "trips": 0}},
    )
    b = report(
        "w:b",
        shadow=shadow(
            {
                "GET /x": counts(
                    sampled=4, matches=4, skipped={"concurrency": 1}, noise=["/a", "/c"]
                )
            },
            [{"at": 20.0, "request_id": "b1"}, {"at": 40.0, "request_id": "b2"}],
        ),
        breakers={
            "GET /x": {"state": "open", "trips": 1, "retry_in": 12.0},
            "GET /y": {"state": "half-open", "trips": 1},
        },
    )
    c = report("w:c", breakers={"GET /x": {"state": "half-open", "trips": 3}})
    combined = combine_reports([c, a, b], keep=3)
    assert combined["workers"] == ["w:a", "w:b", "w:c"]
    routes = combined["shadow"]["routes"]
    assert list(routes) == ["GET /only-a", "GET /x"]
    assert routes["GET /x"] == counts(
        sampled=7, matches=6, mismatches=1, skipped={"concurrency": 1}, noise=["/a", "/b", "/c"]
    )
    assert routes["GET /only-a"]["skipped"] == {"concurrency": 2}
    assert [m["request_id"] for m in combined["shadow"]["recent"]] == ["b2", "a2", "b1"]
    assert combined["breakers"] == {
        "GET /x": {
            "state": "open",
            "workers": {
                "w:a": {"state": "closed", "trips": 0},
                "w:b": {"state": "open", "trips": 1, "retry_in": 12.0},
                "w:c": {"state": "half-open", "trips": 3},
            },
        },
        "GET /y": {"state": "half-open", "workers": {"w:b": {"state": "half-open", "trips": 1}}},
    }


@pytest.mark.parametrize(
    ("states", "worst"),
    [
        (["closed", "closed"], "closed"),
        (["closed", "half-open"], "half-open"),
        (["half-open", "open", "closed"], "open"),
        (["open", "closed"], "open"),
    ],
)
def test_combine_reports_shows_each_breakers_worst_state(states: list[str], worst: str) -> None:
    reports = [
        report(f"w:{n}", breakers={"GET /x": {"state": state}}) for n, state in enumerate(states)
    ]
    assert combine_reports(reports)["breakers"]["GET /x"]["state"] == worst


def test_combine_reports_of_nothing() -> None:
    assert combine_reports([]) == {
        "workers": [],
        "shadow": {"routes": {}, "recent": []},
        "breakers": {},
        "fallbacks": {},
    }
    assert json.loads(json.dumps(combine_reports([report("w:1")])))["workers"] == ["w:1"]


def test_combine_reports_adds_up_fallbacks() -> None:
    a = report("w:a", fallbacks={"GET /x": 2})
    b = report("w:b", fallbacks={"GET /x": 1, "GET /y": 4})
    assert combine_reports([a, b, report("w:c")])["fallbacks"] == {"GET /x": 3, "GET /y": 4}
