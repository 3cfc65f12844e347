"""One storage backend for the flags and the worker reports: one Redis client per worker, one
atomic write, one warning policy, one close; and no Redis client or connection left behind.

Redis tests use the server on 127.0.0.1:6379 (skipped when none answers), each under a key of
its own whose keys are deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
import redis.asyncio
from starlette.testclient import TestClient
from structlog.testing import capture_logs
from support import eventually, free_port, needs_redis

from gateway import cli
from gateway.app import create_app
from gateway.flags.model import FlagState
from gateway.flags.stores import FlagStore, StoreUnavailable
from gateway.reports import ReportPublisher, ReportStore
from gateway.settings import Settings, load_settings
from gateway.storage import atomic
from gateway.storage.file import FileStorage
from gateway.storage.health import StoreHealth
from gateway.storage.redis import RedisStorage
from gateway.storage.tasks import cancel_and_wait

REDIS_URL = "redis://127.0.0.1:6379/0"

CONFIG = """
[legacy]
app = "sample_apps:create_flask"
threads = 2
"""


def kill(state: FlagState) -> FlagState:
    return state.model_copy(update={"kill_switch": True})


def report(worker: str) -> dict[str, Any]:
    return {"worker": worker, "updated": time.time()}


@dataclass
class ClientRecord:
    client: redis.asyncio.Redis
    closes: int = 0


@pytest.fixture
def redis_clients(monkeypatch: pytest.MonkeyPatch) -> list[ClientRecord]:
    """Every ``redis.asyncio.Redis`` client made from now on, with how often it was closed."""
    records: list[ClientRecord] = []
    make = redis.asyncio.Redis.from_url

    def counting_from_url(url: str, **options: Any) -> redis.asyncio.Redis:
        client = make(url, **options)
        record = ClientRecord(client)
        aclose = client.aclose

        async def counting_aclose(*args: Any, **kwargs: Any) -> None:
            record.closes += 1
            await aclose(*args, **kwargs)

        client.aclose = counting_aclose  # type: ignore[method-assign]
        records.append(record)
        return client

    monkeypatch.setattr(redis.asyncio.Redis, "from_url", counting_from_url)
    return records


@pytest.fixture
def redis_key() -> Iterator[str]:
    key = f"gateway-test:{uuid.uuid4().hex}"
    yield key
    with redis.Redis.from_url(REDIS_URL) as client:
        keys = list(client.scan_iter(match=key + "*"))
        if keys:
            client.delete(*keys)


def redis_settings(tmp_path: Path, key: str) -> Settings:
    config = tmp_path / "gateway.toml"
    config.write_text(CONFIG)
    env = {"GATEWAY_FLAGS__STORE": "redis", "GATEWAY_FLAGS__REDIS_KEY": key}
    return load_settings(config, env)


# -- one Redis client per worker ----------------------------------------------------------------


@needs_redis
def test_a_worker_has_one_redis_client_for_its_flags_and_its_report(
    tmp_path: Path, redis_key: str, redis_clients: list[ClientRecord]
) -> None:
    gateway = create_app(redis_settings(tmp_path, redis_key))
    assert redis_clients == []  # building opens nothing (gateway check, gateway routes)
    assert gateway.flags.store.storage is gateway.reports.store.storage

    report_key = f"{redis_key}:reports:{gateway.reports.worker}"
    with redis.Redis.from_url(REDIS_URL) as probe, TestClient(gateway):
        # The flag watcher is subscribed and the publisher has written this worker's report.
        assert eventually(lambda: probe.exists(report_key), limit=5)
        assert eventually(lambda: probe.pubsub_numsub(f"{redis_key}:changed")[0][1] == 1)
        [record] = redis_clients
        assert record.closes == 0
    # Shut down: the report is gone and the one client closed, once, after both users stopped.
    assert [record.closes for record in redis_clients] == [1]
    with redis.Redis.from_url(REDIS_URL) as probe:
        assert not probe.exists(report_key)


@needs_redis
@pytest.mark.anyio
@pytest.mark.parametrize("first", ["flags", "reports"])
async def test_the_storage_closes_once_when_its_last_view_closes(
    first: str, redis_key: str, redis_clients: list[ClientRecord]
) -> None:
    storage = RedisStorage(REDIS_URL, key=redis_key)
    flags, reports = FlagStore(storage), ReportStore(storage)
    await flags.update(kill)
    await reports.publish("w:1", report("w:1"))
    closing, staying = (flags, reports) if first == "flags" else (reports, flags)

    await closing.close()
    await closing.close()  # closing a view twice does not count twice
    # The other view still works on the same client.
    if staying is reports:
        assert [r["worker"] for r in await reports.read()] == ["w:1"]
    else:
        assert (await flags.load()) == FlagState(version=1, kill_switch=True)
    assert [record.closes for record in redis_clients] == [0]

    await staying.close()
    assert [record.closes for record in redis_clients] == [1]
    # A closed storage refuses work instead of quietly connecting again.
    with pytest.raises(StoreUnavailable, match="closed"):
        await flags.load()
    with pytest.raises(StoreUnavailable, match="closed"):
        await storage.publish_report("w:1", report("w:1"))


@needs_redis
def test_the_cli_closes_every_redis_client_it_opens(
    tmp_path: Path,
    redis_key: str,
    redis_clients: list[ClientRecord],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = redis_settings(tmp_path, redis_key)
    # gateway shadow report and gateway routes read the worker reports...
    assert asyncio.run(cli._read_reports(settings)) == []
    # ...gateway flags reads and changes the flag state.
    for command in ("list", "kill"):
        args = argparse.Namespace(flags_command=command, json=True)
        assert asyncio.run(cli._flags_action(args, settings)) == 0
    assert '"kill_switch": true' in capsys.readouterr().out
    assert [record.closes for record in redis_clients] == [1, 1, 1]


# -- no call outlives its caller, no connection outlives the storage ---------------------------


@pytest.mark.anyio
async def test_a_bounded_redis_call_never_outlives_its_caller() -> None:
    # The cause of the ResourceWarning that failed tests at random: with asyncio.wait_for, a
    # call whose clean-up takes a few loop turns (redis-py's does) was left running in its own
    # task when an anyio cancel scope cancelled the caller again, and later reconnected.
    storage = RedisStorage(f"redis://127.0.0.1:{free_port()}/0")  # never contacted
    running: list[str] = []

    async def call() -> None:
        running.append("call")
        try:
            await anyio.sleep(10)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.05)  # a clean-up that takes several loop turns
            running.remove("call")

    with anyio.move_on_after(0.05):
        await storage._call(call())
    assert running == []
    await storage.close()


@needs_redis
@pytest.mark.anyio
async def test_closing_after_a_cancelled_watch_leaves_no_task_and_no_connection(
    redis_key: str, redis_clients: list[ClientRecord]
) -> None:
    before = asyncio.all_tasks()  # the test runner's own
    storage = RedisStorage(REDIS_URL, key=redis_key, refresh_interval=0.1)
    for delay in (0.0, 0.02, 0.15, 0.3):  # cancelled while subscribing, waiting, refreshing
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(storage.watch_flags, lambda state: None)
            await anyio.sleep(delay)
            tasks.cancel_scope.cancel()
    await storage.close()

    assert asyncio.all_tasks() - before == set()  # no call or clean-up still running
    [record] = redis_clients
    pool = record.client.connection_pool
    connections = [*pool._available_connections, *pool._in_use_connections]
    assert connections  # it did connect...
    assert not any(connection.is_connected for connection in connections)  # ...and closed all


# -- one atomic write ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_flags_and_reports_go_through_the_one_atomic_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written: list[Path] = []
    write = atomic.write_atomically

    def recording_write(path: Path, payload: bytes) -> None:
        written.append(path)
        write(path, payload)

    monkeypatch.setattr("gateway.storage.file.write_atomically", recording_write)
    storage = FileStorage(tmp_path / "flags.json")
    flags, reports = FlagStore(storage), ReportStore(storage)

    await flags.update(kill)
    await reports.publish("web-1:42", report("web-1:42"))

    report_file = tmp_path / "reports" / "web-1-42.json"
    assert written == [tmp_path / "flags.json", report_file]
    # The same write, the same guarantees: readable by workers running as another user, and
    # no temporary file left behind.
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == atomic.DEFAULT_MODE
    assert sorted(p.name for p in report_file.parent.iterdir()) == [report_file.name]
    await reports.close()
    await flags.close()


@pytest.mark.anyio
async def test_the_atomic_write_keeps_the_files_mode(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    atomic.write_atomically(path, b"{}")
    path.chmod(0o640)
    atomic.write_atomically(path, b'{"version": 1}')
    assert (stat.S_IMODE(path.stat().st_mode), path.read_bytes()) == (0o640, b'{"version": 1}')


# -- one warning policy ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_flag_watcher_and_the_report_publisher_warn_through_one_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failures: list[str] = []
    failed = StoreHealth.failed

    def counting_failed(self: StoreHealth, reason: str) -> None:
        failures.append(self.subject)
        failed(self, reason)

    monkeypatch.setattr(StoreHealth, "failed", counting_failed)
    storage = RedisStorage(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    flags, reports = FlagStore(storage), ReportStore(storage)
    publisher = ReportPublisher(reports, build=dict, version=lambda: 0, interval=0.05)

    with capture_logs() as logs:
        await publisher.start()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(flags.watch, lambda state: None)
            await anyio.sleep(1.5)  # the watcher retries at 0, 0.5 s; the publisher constantly
            tasks.cancel_scope.cancel()
        await publisher.stop()
    await flags.close()

    # Both retried several times, and both said so once: the same policy, rate-limited.
    assert failures.count("flags") >= 2
    assert failures.count("reports") >= 5
    warnings = sorted((e["event"], e["store"]) for e in logs if e["log_level"] == "warning")
    assert warnings == [
        ("flags.store_unavailable", flags.description),
        ("reports.store_unavailable", reports.description),
    ]


@pytest.mark.anyio
async def test_the_report_publisher_says_when_the_store_is_back(tmp_path: Path) -> None:
    blocker = tmp_path / "reports"
    blocker.write_text("a file where the reports folder belongs")
    storage = FileStorage(tmp_path / "flags.json")
    publisher = ReportPublisher(ReportStore(storage), build=dict, version=lambda: 0, interval=0.02)

    with capture_logs() as logs:
        await publisher.start()
        await anyio.sleep(0.2)  # about ten failed attempts
        blocker.unlink()

        def events() -> list[str]:
            return [e["event"] for e in logs if e["event"].startswith("reports.")]

        with anyio.fail_after(5):
            while "reports.store_available" not in events():
                await anyio.sleep(0.02)
        assert [r["worker"] for r in await storage.read_reports()] == [publisher.worker]
        await publisher.stop()

    assert events() == ["reports.store_unavailable", "reports.store_available"]
    assert await storage.read_reports() == []  # stopped: its report is gone


@pytest.mark.anyio
async def test_stopping_a_task_survives_a_lost_cancellation() -> None:
    # On Python 3.11, asyncio.wait_for (inside every redis-py command) can swallow a
    # cancellation; a watcher cancelled once then ran on and a shut-down waiting for it hung.
    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # lost, as in wait_for's race
            await asyncio.sleep(10)
        await asyncio.sleep(10)

    task = asyncio.get_running_loop().create_task(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(2):
        await cancel_and_wait(task)
    assert task.cancelled()
