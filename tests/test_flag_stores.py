"""The flag state in each storage backend: one contract for the file and Redis backends (through
the ``FlagStore`` view the runtime uses), then each backend's failure modes.

Redis tests use the server on 127.0.0.1:6379 (skipped when none answers), each with a key of
its own that is deleted afterwards; tests that kill Redis start a ``redis-server`` of their own.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
import redis
from structlog.testing import capture_logs
from support import free_port, needs_redis, redis_reachable

from gateway.flags.model import FlagSpec, FlagState
from gateway.flags.stores import FlagStore, StoreUnavailable
from gateway.storage.file import FileStorage
from gateway.storage.redis import RedisStorage, redact_url

REDIS_URL = "redis://127.0.0.1:6379/0"
REPO = Path(__file__).resolve().parent.parent
#: The functional requirement: every process applies a change within one second.
DELIVERY_BOUND = 1.0


def unique_key() -> str:
    return f"test:gateway:flags:{uuid.uuid4().hex}"


def bump(name: str = "counter") -> Callable[[FlagState], FlagState]:
    """A change that adds one to a flag's percentage: a counter that shows lost updates."""

    def change(state: FlagState) -> FlagState:
        spec = state.flags.get(name, FlagSpec(mode="canary"))
        spec = spec.model_copy(update={"percentage": spec.percentage + 1})
        return state.model_copy(update={"flags": {**state.flags, name: spec}})

    return change


def set_kill_switch(value: bool) -> Callable[[FlagState], FlagState]:
    return lambda state: state.model_copy(update={"kill_switch": value})


@dataclass
class Backend:
    """Where a store lives; ``open`` makes another backend and view on it (as another process
    would)."""

    kind: str
    target: str  # a file path or a Redis URL
    key: str = ""
    opened: list[FlagStore] = field(default_factory=list)

    def open(self) -> FlagStore:
        if self.kind == "file":
            store = FlagStore(FileStorage(Path(self.target)))
        else:
            store = FlagStore(RedisStorage(self.target, key=self.key))
        self.opened.append(store)
        return store


@pytest.fixture(params=["file", pytest.param("redis", marks=needs_redis)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "file":
        backend = Backend("file", str(tmp_path / "flags" / "state.json"))
    else:
        backend = Backend("redis", REDIS_URL, key=unique_key())
    try:
        yield backend
    finally:
        for store in backend.opened:
            await store.close()
        if backend.kind == "redis":
            with redis.Redis.from_url(REDIS_URL) as client:
                client.delete(backend.key)


class Deliveries:
    """An ``on_change`` callback that records states and lets a test wait for one."""

    def __init__(self) -> None:
        self.states: list[FlagState] = []
        self._arrived = anyio.Event()

    def __call__(self, state: FlagState) -> None:
        self.states.append(state)
        self._arrived.set()
        self._arrived = anyio.Event()

    async def wait_for(self, wanted: Callable[[FlagState], bool], *, within: float) -> float:
        """Seconds until a delivered state satisfies ``wanted``; fails after ``within``."""
        started = time.monotonic()
        try:
            with anyio.fail_after(within):
                while not any(wanted(state) for state in self.states):
                    await self._arrived.wait()
        except TimeoutError:
            pytest.fail(f"not delivered within {within} s; delivered: {self.states}")
        return time.monotonic() - started


def unavailable_warnings(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [entry for entry in logs if entry["event"] == "flags.store_unavailable"]


# -- the contract both stores keep ------------------------------------------------------------


@pytest.mark.anyio
async def test_an_empty_store_loads_none(backend: Backend) -> None:
    assert await backend.open().load() is None


@pytest.mark.anyio
async def test_update_bumps_the_version_and_load_returns_the_new_state(backend: Backend) -> None:
    store = backend.open()
    first = await store.update(set_kill_switch(True))
    second = await store.update(bump("catalog-books"))

    assert (first.version, first.kill_switch) == (1, True)
    assert second.version == 2
    assert second.flags == {"catalog-books": FlagSpec(mode="canary", percentage=1)}
    assert await store.load() == second
    assert await backend.open().load() == second


@pytest.mark.anyio
async def test_an_update_that_yields_an_invalid_state_writes_nothing(backend: Backend) -> None:
    store = backend.open()
    await store.update(set_kill_switch(True))

    def bad_name(state: FlagState) -> FlagState:
        # model_copy skips validation, so the store has to catch it before writing.
        return state.model_copy(update={"flags": {"Not A Flag Name": FlagSpec()}})

    with pytest.raises(ValueError, match="must match"):
        await store.update(bad_name)
    assert await store.load() == FlagState(version=1, kill_switch=True)


@pytest.mark.anyio
async def test_concurrent_updaters_in_other_instances_never_lose_an_update(
    backend: Backend,
) -> None:
    async def twenty_bumps(store: FlagStore) -> None:
        for _ in range(20):
            await store.update(bump())

    async with anyio.create_task_group() as tasks:
        for _ in range(2):
            tasks.start_soon(twenty_bumps, backend.open())

    state = await backend.open().load()
    assert state is not None
    assert (state.version, state.flags["counter"].percentage) == (40, 40)


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from gateway.flags.model import FlagSpec, FlagState
    from gateway.storage.file import FileStorage
    from gateway.storage.redis import RedisStorage

    kind, target, key = sys.argv[1:4]

    def bump(state: FlagState) -> FlagState:
        spec = state.flags.get("counter", FlagSpec(mode="canary"))
        spec = spec.model_copy(update={"percentage": spec.percentage + 1})
        return state.model_copy(update={"flags": {**state.flags, "counter": spec}})

    async def main() -> None:
        storage = (FileStorage(Path(target)) if kind == "file"
                   else RedisStorage(target, key=key))
        print("ready", flush=True)
        sys.stdin.readline()  # start together, so the updates really contend
        for _ in range(20):
            await storage.update_flags(bump)
        await storage.close()

    asyncio.run(main())
    """
)


async def load_and_close(kind: str, target: str, key: str) -> FlagState | None:
    store = FlagStore(
        FileStorage(Path(target)) if kind == "file" else RedisStorage(target, key=key)
    )
    try:
        return await store.load()
    finally:
        await store.close()


def test_updaters_in_separate_processes_never_lose_an_update(tmp_path: Path) -> None:
    # Synchronous on purpose: the processes run their own event loops; this one only waits.
    kinds = ["file"] + (["redis"] if redis_reachable() else [])
    for kind in kinds:
        target = str(tmp_path / "state.json") if kind == "file" else REDIS_URL
        key = unique_key()
        children = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, kind, target, key],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        try:
            for child in children:
                assert child.stdout is not None
                assert child.stdout.readline().strip() == "ready"
            for child in children:
                assert child.stdin is not None
                child.stdin.write("go\n")
                child.stdin.close()
            for child in children:
                assert child.wait(timeout=60) == 0
            state = asyncio.run(load_and_close(kind, target, key))
            assert state is not None, kind
            assert (state.version, state.flags["counter"].percentage) == (60, 60), kind
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
                for stream in (child.stdin, child.stdout):
                    if stream is not None:
                        stream.close()
            if kind == "redis":
                with redis.Redis.from_url(REDIS_URL) as client:
                    client.delete(key)


@pytest.mark.anyio
async def test_watch_delivers_changes_from_another_instance_within_a_second(
    backend: Backend,
) -> None:
    watcher, writer = backend.open(), backend.open()
    deliveries = Deliveries()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watcher.watch, deliveries)
        await anyio.sleep(0.3)  # let it subscribe (or poll once) before the first change

        await writer.update(set_kill_switch(True))
        await deliveries.wait_for(lambda s: s.version == 1, within=DELIVERY_BOUND)
        await writer.update(bump("catalog-books"))
        await deliveries.wait_for(lambda s: s.version == 2, within=DELIVERY_BOUND)

        tasks.cancel_scope.cancel()
    # Each state once: a pub/sub message and a refresh that both see version 1 deliver it once.
    assert [state.version for state in deliveries.states] == [1, 2]
    assert deliveries.states[-1].flags["catalog-books"].percentage == 1


@pytest.mark.anyio
async def test_watch_first_delivers_the_state_it_finds(backend: Backend) -> None:
    # A change made between the runtime's load() and the start of watch() is not lost.
    await backend.open().update(set_kill_switch(True))
    deliveries = Deliveries()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(backend.open().watch, deliveries)
        await deliveries.wait_for(lambda s: s.kill_switch, within=DELIVERY_BOUND)
        tasks.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_failing_callback_does_not_stop_the_watch(backend: Backend) -> None:
    deliveries = Deliveries()

    async def flaky(state: FlagState) -> None:
        deliveries(state)
        if state.version == 1:
            raise RuntimeError("boom")

    writer = backend.open()
    with capture_logs() as logs:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(backend.open().watch, flaky)
            await writer.update(set_kill_switch(True))
            await deliveries.wait_for(lambda s: s.version == 1, within=DELIVERY_BOUND)
            await writer.update(set_kill_switch(False))
            await deliveries.wait_for(lambda s: s.version == 2, within=DELIVERY_BOUND)
            tasks.cancel_scope.cancel()
    assert [entry["event"] for entry in logs if entry["log_level"] == "error"] == [
        "flags.on_change_failed"
    ]


# -- the file backend -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_file_store_writes_atomically_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "flags.json"
    store = FileStorage(path)
    await store.update_flags(set_kill_switch(True))
    await store.update_flags(bump())

    assert FlagState.model_validate_json(path.read_text()).version == 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["flags.json", "flags.json.lock"]
    assert store.description == f"file:{path}"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "Invalid JSON"),
        ('{"version": "three"}', "version"),
        ('{"flags": {"Bad Name": {}}}', "must match"),
        ("", "Invalid JSON"),
    ],
)
async def test_file_store_reports_an_invalid_file(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "flags.json"
    path.write_text(content)
    store = FileStorage(path)

    with pytest.raises(StoreUnavailable, match=problem) as raised:
        await store.load_flags()
    assert str(path) in str(raised.value)
    # Writing over an unreadable file would reset every flag it held: the update refuses.
    with pytest.raises(StoreUnavailable):
        await store.update_flags(set_kill_switch(True))
    assert path.read_text() == content


@pytest.mark.anyio
async def test_file_store_reports_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.mkdir()  # a directory where the file should be: reading it fails with an OSError
    with pytest.raises(StoreUnavailable, match="cannot read"):
        await FileStorage(path).load_flags()


@pytest.mark.anyio
async def test_file_watch_keeps_the_last_state_through_an_invalid_file(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    writer = FileStorage(path)
    await writer.update_flags(set_kill_switch(True))
    deliveries = Deliveries()

    with capture_logs() as logs:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(FileStorage(path, poll_interval=0.05).watch_flags, deliveries)
            await deliveries.wait_for(lambda s: s.version == 1, within=DELIVERY_BOUND)

            path.write_text("{half a docu")  # what a careless editor would leave
            await anyio.sleep(0.6)  # about ten polls, every one of them failing
            assert [s.version for s in deliveries.states] == [1]
            assert len(unavailable_warnings(logs)) == 1
            assert str(path) in str(unavailable_warnings(logs)[0]["reason"])

            path.write_text(FlagState(version=7, kill_switch=False).model_dump_json())
            await deliveries.wait_for(lambda s: s.version == 7, within=DELIVERY_BOUND)
            tasks.cancel_scope.cancel()

    assert len(unavailable_warnings(logs)) == 1
    assert "flags.store_available" in [entry["event"] for entry in logs]


@pytest.mark.anyio
async def test_file_watch_keeps_the_last_state_when_the_file_vanishes(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    await FileStorage(path).update_flags(set_kill_switch(True))
    deliveries = Deliveries()

    with capture_logs() as logs:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(FileStorage(path, poll_interval=0.05).watch_flags, deliveries)
            await deliveries.wait_for(lambda s: s.version == 1, within=DELIVERY_BOUND)
            path.unlink()
            await anyio.sleep(0.3)
            tasks.cancel_scope.cancel()

    assert [s.version for s in deliveries.states] == [1]
    [warning] = unavailable_warnings(logs)
    assert "missing" in str(warning["reason"])


# -- the Redis backend ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "description"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://alice:s3cret@127.0.0.1:6380/2", "redis://127.0.0.1:6380/2"),
        ("rediss://:s3cret@127.0.0.1", "rediss://127.0.0.1"),
        ("redis://127.0.0.1/0?password=s3cret&db=1", "redis://127.0.0.1/0?db=1"),
        ("unix:///run/redis.sock?db=1", "unix:///run/redis.sock?db=1"),
    ],
)
def test_redis_description_never_shows_a_password(url: str, description: str) -> None:
    assert redact_url(url) == description
    assert RedisStorage(url).description == description


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A Redis URL whose server accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # the kernel completes handshakes; nobody ever reads
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


@pytest.fixture
def nothing_listens() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.mark.anyio
@pytest.mark.parametrize("dead", ["nothing_listens", "black_hole"])
async def test_redis_calls_fail_within_their_bound_when_redis_does_not_answer(
    request: pytest.FixtureRequest, dead: str
) -> None:
    store = RedisStorage(request.getfixturevalue(dead))
    try:
        calls: list[Callable[[], Awaitable[object]]] = [
            store.load_flags,
            lambda: store.update_flags(set_kill_switch(True)),
        ]
        for call in calls:
            started = time.monotonic()
            with anyio.fail_after(5), pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1"):
                await call()
            # connect_timeout + read_timeout is 1.0 s; the slack is for a loaded machine.
            assert time.monotonic() - started < 1.5
    finally:
        await store.close()


@pytest.mark.anyio
@pytest.mark.parametrize("dead", ["nothing_listens", "black_hole"])
async def test_redis_watch_survives_a_dead_redis_and_warns_once_per_interval(
    request: pytest.FixtureRequest, dead: str
) -> None:
    store = RedisStorage(request.getfixturevalue(dead))
    deliveries = Deliveries()
    try:
        with capture_logs() as logs:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(store.watch_flags, deliveries)
                # Retries at about 0, 0.5 (+1 for the black hole), 1.5 s: several tries, one line.
                await anyio.sleep(2.2)
                tasks.cancel_scope.cancel()
    finally:
        await store.close()
    assert deliveries.states == []
    [warning] = unavailable_warnings(logs)
    assert warning["store"] == store.description


@needs_redis
@pytest.mark.anyio
async def test_redis_store_reports_garbage_at_its_key() -> None:
    key = unique_key()
    store = RedisStorage(REDIS_URL, key=key)
    try:
        with redis.Redis.from_url(REDIS_URL) as client:
            client.set(key, "not json")
        with pytest.raises(StoreUnavailable, match="not a valid flag state"):
            await store.load_flags()
        with pytest.raises(StoreUnavailable, match="not a valid flag state"):
            await store.update_flags(set_kill_switch(True))
    finally:
        await store.close()
        with redis.Redis.from_url(REDIS_URL) as client:
            client.delete(key)


@needs_redis
@pytest.mark.anyio
async def test_redis_watch_keeps_the_last_state_through_garbage_at_its_key() -> None:
    key = unique_key()
    writer = RedisStorage(REDIS_URL, key=key)
    watcher = RedisStorage(REDIS_URL, key=key, refresh_interval=0.2)
    deliveries = Deliveries()
    try:
        await writer.update_flags(set_kill_switch(True))
        with capture_logs() as logs:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watcher.watch_flags, deliveries)
                await deliveries.wait_for(lambda s: s.version == 1, within=DELIVERY_BOUND)

                with redis.Redis.from_url(REDIS_URL) as client:
                    client.set(key, "not json")
                    await anyio.sleep(1.0)  # about five refreshes, every one failing
                    assert [s.version for s in deliveries.states] == [1]
                    assert len(unavailable_warnings(logs)) == 1

                    # The repair, then the notification an update would have sent.
                    client.set(key, FlagState(version=9).model_dump_json())
                    client.publish(watcher.channel, "9")
                await deliveries.wait_for(lambda s: s.version == 9, within=DELIVERY_BOUND)
                tasks.cancel_scope.cancel()
    finally:
        await watcher.close()
        await writer.close()
        with redis.Redis.from_url(REDIS_URL) as client:
            client.delete(key)
    [warning] = unavailable_warnings(logs)
    assert "not a valid flag state" in str(warning["reason"])
    assert "flags.store_available" in [entry["event"] for entry in logs]


@needs_redis
@pytest.mark.anyio
async def test_redis_watch_catches_a_write_that_published_nothing() -> None:
    # A plain SET (redis-cli, a restore) publishes nothing; the periodic refresh still sees it.
    key = unique_key()
    store = RedisStorage(REDIS_URL, key=key, refresh_interval=0.3)
    deliveries = Deliveries()
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(store.watch_flags, deliveries)
            await anyio.sleep(0.1)
            with redis.Redis.from_url(REDIS_URL) as client:
                client.set(key, FlagState(version=3, kill_switch=True).model_dump_json())
            await deliveries.wait_for(lambda s: s.version == 3, within=DELIVERY_BOUND)
            tasks.cancel_scope.cancel()
    finally:
        await store.close()
        with redis.Redis.from_url(REDIS_URL) as client:
            client.delete(key)


class RedisServer:
    """A ``redis-server`` of the test's own on a free port, to kill and bring back."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                "redis-server",
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self._directory)),
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while True:
            try:
                with redis.Redis(port=self.port, socket_timeout=0.2) as client:
                    client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=5)
            self._process = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.anyio
async def test_redis_watch_survives_redis_dying_and_coming_back(own_redis: RedisServer) -> None:
    watcher, writer = RedisStorage(own_redis.url), RedisStorage(own_redis.url)
    deliveries = Deliveries()
    try:
        with capture_logs() as logs:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(watcher.watch_flags, deliveries)
                await writer.update_flags(set_kill_switch(True))
                await deliveries.wait_for(lambda s: s.kill_switch, within=DELIVERY_BOUND)

                own_redis.kill()
                with pytest.raises(StoreUnavailable):
                    await writer.update_flags(set_kill_switch(False))
                await anyio.sleep(1.0)
                assert len(unavailable_warnings(logs)) == 1

                own_redis.start()
                # The new server starts empty (no persistence) and counts versions from 1 again:
                # the watcher must deliver the new state although its version is not new.
                state = await writer.update_flags(bump("after-restart"))
                assert state.version == 1
                # The watcher reconnects at its next back-off step (at most 5 s away).
                await deliveries.wait_for(lambda s: "after-restart" in s.flags, within=6.0)
                tasks.cancel_scope.cancel()
    finally:
        await watcher.close()
        await writer.close()
    assert [s.version for s in deliveries.states] == [1, 1]
    assert len(unavailable_warnings(logs)) == 1
    assert "flags.store_available" in [entry["event"] for entry in logs]
