"""Storage in Redis, shared by every gateway process on every host, through one client.

The flag state is one JSON string at one key, so a read is one ``GET`` and a write is one
optimistic transaction (``WATCH``, ``GET``, ``MULTI``, ``SET``, ``PUBLISH``, ``EXEC``) that is
retried when another writer got there first. Flag watchers subscribe to the channel the
transaction publishes on and also re-read the key every ``refresh_interval`` seconds, which
catches messages missed while disconnected. Each worker's report is a key of its own under
``reports_prefix`` that expires after ``STALE_AFTER`` seconds, so a worker that died leaves
nothing behind for long::

    storage = RedisStorage("redis://127.0.0.1:6379/0", key="gateway:flags")
    await storage.update_flags(lambda state: state.model_copy(update={"kill_switch": True}))
    await storage.publish_report("web-1:4242", report)
    await storage.close()

Write the flag state only through this class (or the ``gateway flags`` command, which uses it): a
plain ``SET`` from ``redis-cli`` publishes nothing, so watchers see it only at their next
refresh, and one that is not a valid state makes every watcher report the store unavailable.

Every Redis call is bounded by ``connect_timeout + read_timeout``, enforced with
``asyncio.timeout`` on top of the socket timeouts, so a server that accepts connections and never
answers cannot hold up a caller. The client is made on first use (building a gateway that never
starts, as ``gateway check`` does, opens nothing) and closes with ``close``; after that every call
raises ``StoreUnavailable`` instead of quietly connecting again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis.asyncio
from redis.asyncio.client import Pipeline, PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, WatchError

from gateway.errors import StoreUnavailable
from gateway.flags.model import FlagState
from gateway.storage import Storage
from gateway.storage.documents import (
    STALE_AFTER,
    InvalidStoredState,
    OnChange,
    Report,
    apply_change,
    deliver,
    dump_report,
    parse_report,
    parse_state,
)
from gateway.storage.health import StoreHealth

# redis-py 8.1 leaves Pipeline.multi/reset and PubSub.aclose unannotated; those three calls carry
# a `type: ignore[no-untyped-call]` rather than loosening mypy for the whole module.

T = TypeVar("T")

#: Each conflict means another writer succeeded, so this many in a row is heavy contention.
_MAX_ATTEMPTS = 32
_BACKOFF_MIN = 0.5
_BACKOFF_MAX = 5.0
#: Keys fetched per SCAN step when reading reports.
_SCAN_COUNT = 100


def redact_url(url: str) -> str:
    """The URL without credentials: no ``user:password@``, no ``password=`` query parameter."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k.lower() != "password"])
    # Not urlunsplit: it turns ``unix:///path`` into ``unix:/path``.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def _reason(exc: BaseException, *, bound: float) -> str:
    if isinstance(exc, TimeoutError) and not str(exc):
        return f"no answer within {bound:g} s"
    return str(exc) or type(exc).__name__


class RedisStorage(Storage):
    """The flag state at ``key``, worker reports under ``reports_prefix`` (by default
    ``<key>:reports:``), both through one ``redis.asyncio.Redis`` client; see the module
    docstring."""

    def __init__(
        self,
        url: str,
        *,
        key: str = "gateway:flags",
        channel: str | None = None,
        reports_prefix: str | None = None,
        connect_timeout: float = 0.5,
        read_timeout: float = 0.5,
        refresh_interval: float = 5.0,
    ) -> None:
        super().__init__()
        self.url = url
        self.key = key
        self.channel = channel if channel is not None else f"{key}:changed"
        self.reports_prefix = reports_prefix if reports_prefix is not None else f"{key}:reports:"
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.refresh_interval = refresh_interval
        self.description = redact_url(url)
        self.reports_description = f"{self.description} keys {self.reports_prefix}*"
        self._source = f"{self.description} key {key}"
        self._bound = connect_timeout + read_timeout
        self._redis: redis.asyncio.Redis | None = None
        self._closed = False
        #: Clean-ups still returning a connection; ``close`` waits for them.
        self._cleanups: set[asyncio.Task[None]] = set()

    @property
    def client(self) -> redis.asyncio.Redis:
        """The one client, made on first use; ``StoreUnavailable`` once closed."""
        if self._closed:
            raise StoreUnavailable(f"{self.description}: closed")
        if self._redis is None:
            self._redis = redis.asyncio.Redis.from_url(
                self.url,
                socket_connect_timeout=self.connect_timeout,
                socket_timeout=self.read_timeout,
                # PING a connection idle this long before reusing it, and send the subscriber
                # connection a PING as often, so a connection that died silently is noticed.
                health_check_interval=self.refresh_interval,
                # No retries inside the client: failing fast keeps every call within its bound,
                # and the watch loop and the report publisher do the retrying.
                retry=Retry(NoBackoff(), 0),
            )
        return self._redis

    # -- the flag state ----------------------------------------------------------------------

    async def load_flags(self) -> FlagState | None:
        raw = await self._call(self.client.get(self.key))
        return None if raw is None else parse_state(raw, source=self._source)

    async def update_flags(self, change: Callable[[FlagState], FlagState]) -> FlagState:
        """Replace the state with ``change(current)``; ``change`` may run more than once (once per
        conflicting writer), so it must be a pure function of its argument. On
        ``StoreUnavailable`` from a timeout, the update may or may not have been applied."""
        for _ in range(_MAX_ATTEMPTS):
            pipe = self.client.pipeline(transaction=True)
            try:
                return await self._transaction(pipe, change)
            except WatchError:
                continue  # another writer won this round; read its state and try again
            finally:
                # Not `async with`: its exit sends UNWATCH and waits for the answer with no
                # bound of ours, and can raise a bare RedisError over StoreUnavailable.
                await self._quietly(pipe.reset())  # type: ignore[no-untyped-call]
        raise StoreUnavailable(
            f"{self.description}: {_MAX_ATTEMPTS} conflicting updates in a row; try again"
        )

    async def _transaction(
        self, pipe: Pipeline, change: Callable[[FlagState], FlagState]
    ) -> FlagState:
        await self._call(pipe.watch(self.key))
        # After WATCH the pipeline runs commands at once, until multi().
        raw = await self._call(pipe.get(self.key))
        current = FlagState() if raw is None else parse_state(raw, source=self._source)
        payload, new_state = apply_change(current, change)
        pipe.multi()  # type: ignore[no-untyped-call]
        pipe.set(self.key, payload)
        # Inside the transaction: the write and its notification happen together, so no crash
        # between the two can leave watchers waiting for their next refresh.
        pipe.publish(self.channel, str(new_state.version))
        await self._call(pipe.execute())
        return new_state

    async def watch_flags(self, on_change: OnChange) -> None:
        """Deliver the state found at (re)subscription, then every state that differs from the
        last one delivered. Never raises: while Redis is down it keeps the last state, warns
        every 30 s, and reconnects with back-off (0.5 s doubling to 5 s)."""
        health = StoreHealth(self.description, subject="flags", action="keeping the last state")
        delivered: FlagState | None = None
        backoff = _BACKOFF_MIN
        loop = asyncio.get_running_loop()

        async def refresh() -> None:
            nonlocal delivered
            try:
                state = await self.load_flags()
            except InvalidStoredState as exc:
                # Redis answers; only the content is bad. Stay subscribed: the fix arrives with
                # the next message or refresh, with no reconnection and back-off in between.
                health.failed(str(exc))
                return
            health.recovered()
            # A missing key keeps the last state: deleting the key is not a way to reset flags.
            # Whole states are compared, not versions: a Redis restarted without persistence
            # counts again from 1, and its first new state must not pass for the old one.
            if state is not None and state != delivered:
                delivered = state
                await deliver(on_change, state, store=self.description)

        while True:
            pubsub: PubSub | None = None
            try:
                pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                await self._call(pubsub.subscribe(self.channel))
                # Subscribe first, then read: a change between the two is seen either way.
                await refresh()
                backoff = _BACKOFF_MIN
                next_refresh = loop.time() + self.refresh_interval
                while True:
                    wait = next_refresh - loop.time()
                    if wait > 0:
                        message = await self._call(
                            pubsub.get_message(ignore_subscribe_messages=True, timeout=wait),
                            extra=wait,
                        )
                        # None: the wait ran out, or a health-check reply arrived.
                        if message is None or message["type"] != "message":
                            continue
                    await refresh()
                    next_refresh = loop.time() + self.refresh_interval
            except Exception as exc:  # the contract: a watcher never dies, it reports and retries
                if not self._closed:  # closed under it: nothing left to watch
                    health.failed(
                        str(exc)
                        if isinstance(exc, StoreUnavailable)
                        else f"{self.description}: {_reason(exc, bound=self._bound)}"
                    )
            finally:
                if pubsub is not None:
                    # redis < 8 leaves aclose untyped; 8.x types it.
                    await self._quietly(pubsub.aclose())  # type: ignore[no-untyped-call, unused-ignore]
            if self._closed:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    # -- worker reports ----------------------------------------------------------------------

    async def publish_report(self, worker: str, report: Report) -> None:
        key, payload = self.reports_prefix + worker, dump_report(report)
        await self._call(self.client.set(key, payload, ex=int(STALE_AFTER)))

    async def remove_report(self, worker: str) -> None:
        await self._call(self.client.delete(self.reports_prefix + worker))

    async def read_reports(self) -> list[Report]:
        """Every fresh report; the whole read (a ``SCAN`` and an ``MGET``) is one bounded call."""

        async def fetch(client: redis.asyncio.Redis) -> list[bytes | str | None]:
            keys: list[bytes | str] = []
            cursor = 0
            while True:
                cursor, batch = await client.scan(
                    cursor, match=self.reports_prefix + "*", count=_SCAN_COUNT
                )
                keys.extend(batch)
                if cursor == 0:
                    return list(await client.mget(keys)) if keys else []

        reports = []
        for raw in await self._call(fetch(self.client)):
            report = None if raw is None else parse_report(raw)
            if report is not None:
                reports.append(report)
        return reports

    # -- life cycle --------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the client once every clean-up has returned its connection: a clean-up that
        ran after the pool closed would open a fresh connection that nobody closes."""
        if self._closed:
            return
        self._closed = True
        if self._cleanups:
            await asyncio.wait(self._cleanups, timeout=self._bound)
        if self._redis is not None:
            client, self._redis = self._redis, None
            await client.aclose()

    # -- bounded calls -----------------------------------------------------------------------

    async def _call(self, call: Awaitable[T], *, extra: float = 0.0) -> T:
        """Await one Redis call within its bound; any failure becomes ``StoreUnavailable``.

        ``asyncio.timeout``, not ``asyncio.wait_for``: the call runs in the caller's task and
        ends with it. ``wait_for`` runs it in a task of its own and stops waiting for that task
        when the caller is cancelled again meanwhile (anyio cancel scopes re-cancel on every
        loop turn), so the call ran on after its caller, met the closed client, and redis-py's
        pub/sub reconnected on the error: a socket nobody closed, whose ResourceWarning failed
        whichever test was running when it was collected."""
        bound = self._bound + extra
        try:
            async with asyncio.timeout(bound):
                return await call
        except (RedisError, OSError) as exc:  # TimeoutError is an OSError
            if isinstance(exc, WatchError):
                raise
            raise StoreUnavailable(f"{self.description}: {_reason(exc, bound=bound)}") from exc

    async def _quietly(self, cleanup: Awaitable[object]) -> None:
        """Await a clean-up call within the bound, ignoring its failure: the connection is
        dropped or returned to the pool either way, and the caller's own error matters more."""
        # The clean-up runs in a task of its own, shielded: a cancellation of the caller (stop(),
        # or a cancelled anyio scope) still propagates at once, and the connection is returned
        # anyway. (An anyio shield here could absorb a task.cancel(), so the watch loop never
        # ended and stop() waited for ever.) close() waits for these tasks.
        task = asyncio.ensure_future(self._bounded_cleanup(cleanup))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        with contextlib.suppress(Exception):
            await asyncio.shield(task)

    async def _bounded_cleanup(self, cleanup: Awaitable[object]) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._bound):
                await cleanup
