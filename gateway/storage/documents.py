"""What the storage holds, checked the same way by every backend: the flag state document and
worker reports.

::

    state = parse_state(raw, source="file:var/flags.json")   # or InvalidStoredState
    payload, new_state = apply_change(state, change)         # next version, validated
    raw = dump_report(report)
    report = parse_report(raw)                               # None: garbage or stale
    await deliver(on_change, state, store="file:var/flags.json")
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from pydantic import ValidationError

from gateway.errors import StoreUnavailable
from gateway.flags.model import FlagState

log = structlog.get_logger("gateway.flags")

#: A watcher's callback: called with every new flag state.
OnChange = Callable[[FlagState], Awaitable[None] | None]

#: A worker's report: a JSON object with at least ``worker`` and ``updated`` (a Unix time).
Report = dict[str, Any]

#: A report older than this comes from a worker that is gone (the Redis backend also lets its
#: key expire after this long).
STALE_AFTER = 30.0


class InvalidStoredState(StoreUnavailable):
    """The store answers, but what it holds is not a valid ``FlagState``."""


def parse_state(raw: str | bytes, *, source: str) -> FlagState:
    """Validate a stored flag state; ``InvalidStoredState`` names the source and its problems."""
    try:
        return FlagState.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'document'}: {error['msg']}"
            for error in exc.errors()[:3]
        )
        raise InvalidStoredState(f"{source}: not a valid flag state ({problems})") from None


def apply_change(
    current: FlagState, change: Callable[[FlagState], FlagState], *, indent: int | None = None
) -> tuple[str, FlagState]:
    """``change(current)`` with the next version: the JSON to store, and the state readers will
    parse from it. ``change`` may skip validation (``model_copy`` does), so what readers will
    parse is validated here: a bad change raises ``ValidationError`` before anything is written,
    instead of making every watcher report the store unavailable."""
    changed = change(current).model_copy(update={"version": current.version + 1})
    payload = changed.model_dump_json(indent=indent)
    return payload, FlagState.model_validate_json(payload)


async def deliver(on_change: OnChange, state: FlagState, *, store: str) -> None:
    """Call a watcher's callback; a failing callback is logged, never raised into the watch loop
    (the next state is still delivered)."""
    try:
        result = on_change(state)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.exception("flags.on_change_failed", store=store, version=state.version)


def is_fresh(report: Report) -> bool:
    updated = report.get("updated")
    return isinstance(updated, int | float) and time.time() - updated < STALE_AFTER


def dump_report(report: Report) -> bytes:
    return json.dumps(report).encode()


def parse_report(raw: str | bytes) -> Report | None:
    """A stored report, or ``None`` when it is half-written, not an object, or stale."""
    try:
        report = json.loads(raw)
    except ValueError:  # UnicodeDecodeError included
        return None
    return report if isinstance(report, dict) and is_fresh(report) else None
