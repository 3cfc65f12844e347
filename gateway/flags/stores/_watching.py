"""What the file and Redis stores share: parsing a stored state, delivering it to a watcher,
and rate-limited health warnings.

::

    health = StoreHealth("file:var/flags.json")
    health.failed("not valid JSON")   # one warning per interval, however often it fails
    state = parse_state(raw, source="file:var/flags.json")
"""

from __future__ import annotations

import inspect
import time

import structlog
from pydantic import ValidationError

from gateway.flags.model import FlagState
from gateway.flags.stores import OnChange, StoreUnavailable

logger = structlog.get_logger("gateway.flags")


class StoreHealth:
    """Logs ``flags.store_unavailable`` at most once per ``interval`` while a store keeps failing
    (a watcher retries every fraction of a second; one line per retry would drown the log), and
    ``flags.store_available`` once when it answers again."""

    def __init__(self, store: str, *, interval: float = 30.0) -> None:
        self._store = store
        self._interval = interval
        self._last_warning: float | None = None
        self._failing = False

    def failed(self, reason: str) -> None:
        self._failing = True
        now = time.monotonic()
        if self._last_warning is None or now - self._last_warning >= self._interval:
            self._last_warning = now
            logger.warning(
                "flags.store_unavailable",
                store=self._store,
                reason=reason,
                action="keeping the last state",
            )

    def recovered(self) -> None:
        if self._failing:
            self._failing = False
            self._last_warning = None
            logger.info("flags.store_available", store=self._store)


async def deliver(on_change: OnChange, state: FlagState, *, store: str) -> None:
    """Call a watcher's callback; a failing callback is logged, never raised into the watch loop
    (the next state is still delivered)."""
    try:
        result = on_change(state)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("flags.on_change_failed", store=store, version=state.version)


class InvalidStoredState(StoreUnavailable):
    """The store answers, but what it holds is not a valid ``FlagState``."""


def parse_state(raw: str | bytes, *, source: str) -> FlagState:
    """Validate a stored document; ``InvalidStoredState`` names the source and its problems."""
    try:
        return FlagState.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'document'}: {error['msg']}"
            for error in exc.errors()[:3]
        )
        raise InvalidStoredState(f"{source}: not a valid flag state ({problems})") from None
