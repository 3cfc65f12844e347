"""Removing flags from the store: ``delete`` (a flag gone for good) and ``reset`` (back to the
config's defaults), shared by ``gateway flags delete|reset`` and the admin API.

The store holds what operators changed; the routes' ``[routes.flag]`` tables hold each flag's
default. Removing a flag's entry from the store therefore resets a declared flag and deletes
one that no route declares any more (left behind when a route was retired)::

    message = await delete_flag(runtime, "old-flag", actor="alice (cli)")
    message = await reset_flags(runtime, None, actor="alice (cli)")   # every declared flag

Both go through ``FlagRuntime.update``: every process follows within a second, and each changed
flag is written as the same ``flags.changed`` audit line as ``flags set``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import Literal

from gateway.errors import ConfigError
from gateway.flags.model import FlagState
from gateway.flags.runtime import FlagRuntime
from gateway.flags.stores import FlagStore, StoreUnavailable

#: Seconds ``gateway check`` waits for the flag store.
_CHECK_TIMEOUT = 3.0


class FlagNotFound(LookupError):
    """The name is neither declared by a route nor in the store."""


class FlagNotDeclared(ValueError):
    """``reset`` of a flag no route declares: it has no default to go back to."""


def unused_flags(state: FlagState, declared: Collection[str]) -> list[str]:
    """The flags in the store that no route declares (``gateway check`` warns about them)."""
    return sorted(name for name in state.flags if name not in declared)


async def delete_flag(runtime: FlagRuntime, name: str, *, actor: str) -> str:
    """Remove ``name`` from the store; say what that did. ``FlagNotFound`` when unknown."""
    declared = runtime.defaults
    in_store = runtime.view()["flags"].get(name, {}).get("source") == "store"
    if name not in declared and not in_store:
        raise FlagNotFound(_unknown(runtime, name))
    await runtime.update(_remove(name), actor=actor)
    if name in declared:
        return (
            f"flag {name!r} is declared by a route: its store entry is removed, so it is back "
            "to its config default"
        )
    return f"flag {name!r} deleted from the store"


async def reset_flags(runtime: FlagRuntime, name: str | None, *, actor: str) -> str:
    """Put ``name`` (``None``: every declared flag) back to its config default."""
    declared = runtime.defaults
    if name is not None and name not in declared:
        if runtime.view()["flags"].get(name) is None:
            raise FlagNotFound(_unknown(runtime, name))
        raise FlagNotDeclared(
            f"flag {name!r} is not declared by any route, so it has no default to go back to: "
            f"delete it with `gateway flags delete {name}` (DELETE /_gateway/api/flags/{name})"
        )
    names = list(declared) if name is None else [name]
    await runtime.update(_remove(*names), actor=actor)
    which = "every declared flag is" if name is None else f"flag {name!r} is"
    return f"{which} back to its config default"


def _remove(*names: str) -> Callable[[FlagState], FlagState]:
    gone = frozenset(names)

    def change(state: FlagState) -> FlagState:
        kept = {flag: spec for flag, spec in state.flags.items() if flag not in gone}
        return state.model_copy(update={"flags": kept})

    return change


def _unknown(runtime: FlagRuntime, name: str) -> str:
    known = ", ".join(runtime.view()["flags"]) or "none"
    return f"unknown flag {name!r} (known: {known})"


async def change_flags(
    runtime: FlagRuntime,
    command: Literal["delete", "reset"],
    name: str | None,
    *,
    actor: str,
    source: str,
) -> str:
    """``gateway flags delete|reset``: what changed, or a ``ConfigError`` (exit 2) saying why
    nothing did."""
    try:
        if command == "delete" and name is not None:
            return await delete_flag(runtime, name, actor=actor)
        return await reset_flags(runtime, name, actor=actor)
    except (FlagNotFound, FlagNotDeclared) as exc:
        raise ConfigError.at(source, "routes", exc.args[0]) from None


async def unused_flag_warnings(
    store: FlagStore, declared: Collection[str], source: str
) -> list[str]:
    """``gateway check``'s warnings about the store: flags no route declares, or a store it
    cannot read (a warning, not a failure: the config itself is fine)."""
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT):
            state = await store.load()
    except (StoreUnavailable, TimeoutError) as exc:
        reason = str(exc) or "timed out"
        return [f"{source}: warning: cannot read the flag store {store.description}: {reason}"]
    finally:
        await store.close()
    unused = unused_flags(state or FlagState(), declared)
    if not unused:
        return []
    return [
        f"{source}: warning: the flag store {store.description} holds flags no route declares: "
        f"{', '.join(unused)} (remove them with `gateway flags delete NAME`)"
    ]
