"""What a person does with rollouts, for the CLI and the admin API alike: start, pause,
resume, abort, and look. Each is one audited update of the shared flag state::

    commands = RolloutCommands(settings, flags)
    state = await commands.start("GET /api/books", actor="alice (cli)")
    await commands.pause("catalog-books", actor="alice (cli)")
"""

from __future__ import annotations

import time
from typing import Any

from gateway.flags.model import FlagSpec
from gateway.flags.runtime import FlagRuntime
from gateway.rollout.changes import RolloutError, abort, pause, resume, start
from gateway.rollout.state import RolloutState
from gateway.route_lookup import RouteNotFound, find_route
from gateway.settings import RolloutSettings, Settings

__all__ = ["RolloutCommands", "RolloutError", "RouteNotFound", "rollout_settings"]


def rollout_settings(settings: Settings) -> dict[str, RolloutSettings]:
    """Each flagged route's flag and how its rollouts go (a route's ``[routes.rollout]``, else
    the defaults; the first route that configures a shared flag decides)."""
    chosen: dict[str, RolloutSettings] = {}
    for route in settings.routes:
        if route.flag is None:
            continue
        if route.rollout is not None and chosen.get(route.flag) in (None, RolloutSettings()):
            chosen[route.flag] = route.rollout
        chosen.setdefault(route.flag, RolloutSettings())
    return chosen


class RolloutCommands:
    def __init__(self, settings: Settings, flags: FlagRuntime) -> None:
        self._settings = settings
        self._flags = flags
        self._by_flag = rollout_settings(settings)

    def _default(self, flag: str) -> FlagSpec:
        return self._settings.flag_defaults().get(flag, FlagSpec())

    async def start(self, route: str, *, actor: str) -> tuple[str, RolloutState]:
        found = find_route(self._settings, route)
        flag = found.settings.flag
        if flag is None:
            raise RolloutError(
                f"{found.label} has no flag (routes[{found.index}]): a rollout moves a flag"
            )
        steps = self._by_flag[flag].steps
        label = f"{','.join(found.settings.methods)} {found.template}"
        state = await self._flags.update(
            start(flag, label, steps, time.time(), self._default(flag)),
            actor=actor,
            reason=f"rollout started: steps {', '.join(map(str, steps))}",
        )
        return flag, state.rollouts[flag]

    async def pause(self, target: str, *, actor: str) -> tuple[str, RolloutState]:
        flag = self._known(target)
        state = await self._flags.update(pause(flag, actor), actor=actor)
        return flag, state.rollouts[flag]

    async def resume(self, target: str, *, actor: str) -> tuple[str, RolloutState]:
        flag = self._known(target)
        state = await self._flags.update(
            resume(flag, time.time(), self._default(flag)), actor=actor, reason="rollout resumed"
        )
        return flag, state.rollouts[flag]

    async def abort(self, target: str, *, actor: str) -> tuple[str, RolloutState]:
        flag = self._known(target)
        state = await self._flags.update(
            abort(flag, actor, self._default(flag)), actor=actor, reason="rollout aborted"
        )
        return flag, state.rollouts[flag]

    def _known(self, target: str) -> str:
        """A flag name, or the route whose flag is meant (``GET /api/books``)."""
        if target in self._by_flag:
            return target
        try:
            found = find_route(self._settings, target)
        except RouteNotFound:
            known = ", ".join(self._by_flag) or "none"
            raise RouteNotFound(f"unknown flag or route {target!r} (flags: {known})") from None
        if found.settings.flag is None:
            raise RolloutError(f"{found.label} has no flag: it has no rollout")
        return found.settings.flag


def describe(flag: str, rollout: RolloutState, now: float) -> dict[str, Any]:
    """One rollout as ``gateway rollout status --json`` and the admin API show it."""
    lease = rollout.lease_holder if rollout.lease_expires > now else None
    return {
        "flag": flag,
        "route": rollout.route,
        "status": rollout.status,
        "step": rollout.step + 1,
        "steps": list(rollout.steps),
        "current": rollout.current,
        "step_age_seconds": round(now - rollout.step_started, 1),
        "leader": lease,
        "reason": rollout.reason,
        "last_verdict": rollout.last_verdict,
    }
