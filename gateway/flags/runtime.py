"""The flag runtime: the in-memory snapshot every request reads, kept fresh by the store.

The request path calls ``evaluate`` and nothing else: a dictionary lookup and a hash, no I/O. The
store is read once at start-up (bounded by a timeout) and then watched in the background; a store
that is down leaves the last snapshot (or the config's defaults) serving::

    runtime = FlagRuntime(defaults=settings.flag_defaults(), store=store, ...)
    await runtime.start()                          # in the gateway's lifespan
    decision = runtime.evaluate("catalog-books", identity, client_address, override_header_value)
    await runtime.update(lambda state: ..., actor="alice")   # admin API and CLI
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import structlog

from gateway.context import Identity
from gateway.flags.evaluate import FlagInput, evaluate
from gateway.flags.model import FlagDecision, FlagSpec, FlagState, Side
from gateway.flags.openfeature import OpenFeatureEvaluator
from gateway.flags.stores import FlagStore, StoreUnavailable
from gateway.storage.tasks import cancel_and_wait

log = structlog.get_logger("gateway.flags")

_OVERRIDE_VALUES: dict[bytes, Side] = {b"new": "new", b"legacy": "legacy"}
#: Seconds after a write from this process during which a lower version is a stale read.
_STALE_READ_WINDOW = 2.0
_STOP_TIMEOUT = 2.0


class FlagRuntime:
    def __init__(
        self,
        *,
        defaults: Mapping[str, FlagSpec],
        store: FlagStore,
        anonymous_key: Literal["client-address", "none"] = "client-address",
        override_roles: Sequence[str] = ("qa",),
        startup_timeout: float = 1.5,
        provider: OpenFeatureEvaluator | None = None,
    ) -> None:
        self.store = store
        self.provider = provider
        self._defaults = dict(defaults)
        self._anonymous_by_address = anonymous_key == "client-address"
        self._override_roles = frozenset(override_roles)
        self._startup_timeout = startup_timeout
        self._specs: dict[str, FlagSpec] = dict(defaults)
        self._from_store: frozenset[str] = frozenset()
        self._kill_switch = False
        self._version = 0
        #: False until the store has been read once: decisions then say "store-unavailable".
        self._loaded = False
        self._updated_here_at = -_STALE_READ_WINDOW
        self._watcher: asyncio.Task[None] | None = None
        #: The last shared state applied (the rollouts live there too).
        self.state = FlagState()
        #: Called with every state applied (rollouts follow the shared state this way).
        self.listeners: list[Callable[[FlagState], None]] = []

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> FlagRuntime:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            state = await asyncio.wait_for(self.store.load(), self._startup_timeout)
        except (StoreUnavailable, TimeoutError) as exc:
            log.warning(
                "flags.store_unavailable",
                store=self.store.description,
                reason=str(exc) or "timed out",
                serving="config defaults",
            )
        else:
            self.apply(state or FlagState())
        self._watcher = asyncio.create_task(self.store.watch(self.apply))

    async def stop(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            try:
                # Bounded: a store whose watcher ignores cancellation must not hold up shut-down.
                async with asyncio.timeout(_STOP_TIMEOUT):
                    await cancel_and_wait(watcher)
            except TimeoutError:
                log.warning("flags.watcher_did_not_stop", store=self.store.description)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_STOP_TIMEOUT):
                await self.store.close()
        if self.provider is not None:
            self.provider.shutdown()

    def apply(self, state: FlagState) -> None:
        """Swap in a new snapshot (called by the store watcher and after local updates)."""
        if (
            self._loaded
            and state.version < self._version
            and time.monotonic() - self._updated_here_at < _STALE_READ_WINDOW
        ):
            # The watcher read the store just before this process wrote to it: keep the newer
            # state. Outside that window a lower version is the truth: the store was reset (a
            # Redis without persistence restarted) and its versions started again.
            return
        # A rollout's lease renewals and verdicts change the state every interval: only a
        # change to what decides requests is worth a line.
        changed = (
            not self._loaded
            or state.flags != self.state.flags
            or state.kill_switch != self._kill_switch
        )
        self._specs = {**self._defaults, **state.flags}
        self._from_store = frozenset(state.flags)
        self._kill_switch = state.kill_switch
        self._version = state.version
        self._loaded = True
        self.state = state
        for listener in self.listeners:
            listener(state)
        if changed:
            log.info("flags.applied", version=state.version, kill_switch=state.kill_switch)

    def reconfigure(
        self,
        *,
        defaults: Mapping[str, FlagSpec],
        anonymous_key: Literal["client-address", "none"],
        override_roles: Sequence[str],
    ) -> None:
        """A config reload's new defaults and options. What the store holds still wins; each
        attribute is replaced whole, so a request sees the old value or the new one."""
        self._defaults = dict(defaults)
        stored = {name: self._specs[name] for name in self._from_store if name in self._specs}
        self._specs = {**self._defaults, **stored}
        self._anonymous_by_address = anonymous_key == "client-address"
        self._override_roles = frozenset(override_roles)

    @property
    def defaults(self) -> Mapping[str, FlagSpec]:
        """The flags the routes declare, with their config defaults."""
        return self._defaults

    @property
    def loaded(self) -> bool:
        """The store has been read at least once (before that, the config's defaults decide)."""
        return self._loaded

    # -- the request path ----------------------------------------------------------------------

    def evaluate(
        self,
        flag: str,
        identity: Identity,
        client_address: str | None,
        override: bytes | None = None,
    ) -> FlagDecision:
        forced: Side | None = None
        if override is not None:
            wanted = _OVERRIDE_VALUES.get(override.strip().lower())
            if wanted is not None and identity.roles & self._override_roles:
                forced = wanted
            else:
                log.info(
                    "flags.override_ignored",
                    flag=flag,
                    user=identity.subject or "anonymous",
                    value=override[:16].decode("latin-1"),
                )
        spec = self._specs.get(flag) or FlagSpec()
        if self.provider is not None and not self._kill_switch and forced is None:
            default: Side = "new" if spec.mode == "new" else "legacy"
            side, detail = self.provider.evaluate(flag, identity, client_address, default)
            return FlagDecision(flag, side, "provider", detail=detail)
        decision = evaluate(
            FlagInput(
                flag,
                spec,
                identity,
                client_address if self._anonymous_by_address else None,
                forced,
            ),
            kill_switch=self._kill_switch,
        )
        if not self._loaded and decision.reason in ("default", "split", "no-bucket-key"):
            return FlagDecision(decision.flag, decision.side, "store-unavailable", decision.bucket)
        return decision

    # -- reading and changing ------------------------------------------------------------------

    async def update(
        self,
        change: Callable[[FlagState], FlagState],
        *,
        actor: str,
        reason: str | None = None,
    ) -> FlagState:
        """Change the shared state through the store (every process follows) and apply it here
        at once. Writes one audit line per changed flag: who, which flag, old and new (and why,
        when the change says: a rollout's verdict)."""
        before = self.view()
        state = await self.store.update(change)
        self._updated_here_at = time.monotonic()
        self.apply(state)
        audit(before, self.view(), actor=actor, store=self.store.description, reason=reason)
        return state

    def view(self) -> dict[str, Any]:
        """The effective state, for the admin API and the CLI."""
        return {
            "version": self._version,
            "kill_switch": self._kill_switch,
            "store": self.store.description,
            "store_loaded": self._loaded,
            "flags": {
                name: {
                    **spec.model_dump(mode="json"),
                    "source": "store" if name in self._from_store else "default",
                }
                for name, spec in sorted(self._specs.items())
            },
        }


def audit(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    actor: str,
    store: str,
    reason: str | None = None,
) -> None:
    """One ``flags.changed`` line per flag (and the kill switch) that changed."""
    why = {} if reason is None else {"reason": reason}
    if before.get("kill_switch") != after.get("kill_switch"):
        log.warning(
            "flags.changed",
            actor=actor,
            flag="*kill-switch*",
            old=before.get("kill_switch"),
            new=after.get("kill_switch"),
            store=store,
            **why,
        )
    old_flags, new_flags = before.get("flags", {}), after.get("flags", {})
    for name in sorted(set(old_flags) | set(new_flags)):
        old, new = old_flags.get(name), new_flags.get(name)
        if _without_source(old) != _without_source(new):
            log.warning(
                "flags.changed",
                actor=actor,
                flag=name,
                old=_without_source(old),
                new=_without_source(new),
                store=store,
                **why,
            )


def _without_source(spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if spec is None else {k: v for k, v in spec.items() if k != "source"}
