"""A flag store in Redis, shared by every gateway process on every host.

The whole state is one JSON string at one key, so a read is one ``GET`` and a write is one
optimistic transaction (``WATCH``, ``GET``, ``MULTI``, ``SET``, ``PUBLISH``, ``EXEC``) that is
retried when another writer got there first. Watchers subscribe to the channel the transaction
publishes on and also re-read the key every ``refresh_interval`` seconds, which catches messages
missed while disconnected::

    store = RedisFlagStore("redis://127.0.0.1:6379/0")
    await store.update(lambda state: state.model_copy(update={"kill_switch": True}))
    await store.watch(on_change)  # until cancelled

Write only through this store (or the ``gateway flags`` command, which uses it): a plain
``SET`` from ``redis-cli`` publishes nothing, so watchers see it only at their next refresh, and
one that is not a valid state makes every watcher report the store unavailable.

Every Redis call is bounded by ``connect_timeout + read_timeout``, enforced with
``asyncio.wait_for`` on top of the socket timeouts, so a server that accepts connections and
never answers cannot hold up a caller.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis.asyncio
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, WatchError

from gateway.flags.model import FlagState
from gateway.flags.stores import OnChange, StoreUnavailable
from gateway.flags.stores._watching import InvalidStoredState, StoreHealth, deliver, parse_state

# redis-py 8.1 leaves Pipeline.multi/reset and PubSub.aclose unannotated; those three calls carry
# a `type: ignore[no-untyped-call]` rather than loosening mypy for the whole module.

T = TypeVar("T")

#: Each conflict means another writer succeeded, so this many in a row is heavy contention.
_MAX_ATTEMPTS = 32
_BACKOFF_MIN = 0.5
_BACKOFF_MAX = 5.0


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


class RedisFlagStore:
    """The flag state as one JSON string in Redis; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        key: str = "gateway:flags",
        channel: str | None = None,
        connect_timeout: float = 0.5,
        read_timeout: float = 0.5,
        refresh_interval: float = 5.0,
    ) -> None:
        self.description = redact_url(url)
        self.key = key
        self.channel = channel if channel is not None else f"{key}:changed"
        self.refresh_interval = refresh_interval
        self._bound = connect_timeout + read_timeout
        self._source = f"{self.description} key {key}"
        # No connection is made here; the client connects on first use.
        self._redis = redis.asyncio.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=read_timeout,
            # PING a connection idle this long before reusing it, and send the subscriber
            # connection a PING as often, so a connection that died silently is noticed.
            health_check_interval=refresh_interval,
            # No retries inside the client: failing fast keeps every call within its bound, and
            # the watch loop does the retrying, with back-off.
            retry=Retry(NoBackoff(), 0),
        )

    async def load(self) -> FlagState | None:
        raw = await self._call(self._redis.get(self.key))
        return None if raw is None else parse_state(raw, source=self._source)

    async def update(self, change: Callable[[FlagState], FlagState]) -> FlagState:
        """Replace the state with ``change(current)``; ``change`` may run more than once (once per
        conflicting writer), so it must be a pure function of its argument. A ``change`` that
        produces an invalid state raises ``ValidationError`` and nothing is written. On
        ``StoreUnavailable`` from a timeout, the update may or may not have been applied."""
        for _ in range(_MAX_ATTEMPTS):
            pipe = self._redis.pipeline(transaction=True)
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
        changed = change(current).model_copy(update={"version": current.version + 1})
        payload = changed.model_dump_json()
        # Validate exactly what readers will parse: an invalid state written here would make
        # every watcher report the store unavailable.
        new_state = FlagState.model_validate_json(payload)
        pipe.multi()  # type: ignore[no-untyped-call]
        pipe.set(self.key, payload)
        # Inside the transaction: the write and its notification happen together, so no crash
        # between the two can leave watchers waiting for their next refresh.
        pipe.publish(self.channel, str(new_state.version))
        await self._call(pipe.execute())
        return new_state

    async def watch(self, on_change: OnChange) -> None:
        """Deliver the state found at (re)subscription, then every state that differs from the
        last one delivered. Never raises: while Redis is down it keeps the last state, logs a
        warning every 30 s, and reconnects with back-off (0.5 s doubling to 5 s)."""
        health = StoreHealth(self.description)
        delivered: FlagState | None = None
        backoff = _BACKOFF_MIN
        loop = asyncio.get_running_loop()

        async def refresh() -> None:
            nonlocal delivered
            try:
                state = await self.load()
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
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
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
            except StoreUnavailable as exc:
                health.failed(str(exc))
            except Exception as exc:  # the contract: a watcher never dies, it reports and retries
                health.failed(f"{self.description}: {_reason(exc, bound=self._bound)}")
            finally:
                await self._quietly(pubsub.aclose())  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def close(self) -> None:
        await self._redis.aclose()

    async def _call(self, call: Awaitable[T], *, extra: float = 0.0) -> T:
        """Await one Redis call within its bound; any failure becomes ``StoreUnavailable``."""
        bound = self._bound + extra
        try:
            return await asyncio.wait_for(call, bound)
        except (RedisError, OSError) as exc:  # TimeoutError is an OSError
            if isinstance(exc, WatchError):
                raise
            raise StoreUnavailable(f"{self.description}: {_reason(exc, bound=bound)}") from exc

    async def _quietly(self, cleanup: Awaitable[object]) -> None:
        """Await a clean-up call within the bound, ignoring its failure: the connection is
        dropped or returned to the pool either way, and the caller's own error matters more."""
        # The clean-up runs in its own task, shielded: a cancellation of the caller (stop(), or a
        # cancelled anyio scope) still propagates at once, and the connection is returned
        # anyway. (An anyio shield here could absorb a task.cancel(), so the watch loop never
        # ended and stop() waited for ever.)
        with contextlib.suppress(Exception):
            await asyncio.shield(asyncio.wait_for(cleanup, self._bound))
