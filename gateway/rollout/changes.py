"""Every change a rollout makes to the shared flag state, as pure functions of that state.

The CLI, the admin API and the controller all change rollouts through these, inside the flag
store's atomic update, so a step moves the flag and the rollout in one write. Each change that
acts on a step names the step it expects (``step_id``): a process acting on an old view changes
nothing, which is what keeps a step from advancing twice::

    await flags.update(start("catalog-books", "GET /api/books", (10, 50, 100), now), actor=who)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gateway.flags.model import FlagSpec, FlagState
from gateway.rollout.state import RolloutState, Step

Change = Callable[[FlagState], FlagState]


class RolloutError(ValueError):
    """A rollout command that does not apply to the rollout's state (the message says why)."""


def spec_for(step: Step, base: FlagSpec) -> FlagSpec:
    """The flag at a step: shadow, a sticky canary share, or new for everyone at 100."""
    if step == "shadow":
        return base.model_copy(update={"mode": "shadow", "percentage": 0})
    if step >= 100:
        return base.model_copy(update={"mode": "new", "percentage": 100})
    return base.model_copy(update={"mode": "canary", "percentage": step})


def _legacy(base: FlagSpec) -> FlagSpec:
    return base.model_copy(update={"mode": "legacy", "percentage": 0})


def _with(
    state: FlagState, flag: str, rollout: RolloutState, spec: FlagSpec | None = None
) -> FlagState:
    update: dict[str, Any] = {"rollouts": {**state.rollouts, flag: rollout}}
    if spec is not None:
        update["flags"] = {**state.flags, flag: spec}
    return state.model_copy(update=update)


def start(flag: str, route: str, steps: Sequence[Step], now: float, defaults: FlagSpec) -> Change:
    def change(state: FlagState) -> FlagState:
        current = state.rollouts.get(flag)
        if current is not None and current.status in ("running", "paused"):
            raise RolloutError(f"a rollout of {flag!r} is already {current.status}")
        rollout = RolloutState(route=route, steps=tuple(steps)).restarted(0, now)
        return _with(
            state, flag, rollout, spec_for(rollout.current, state.flags.get(flag, defaults))
        )

    return change


def pause(flag: str, actor: str) -> Change:
    def change(state: FlagState) -> FlagState:
        rollout = _existing(state, flag)
        if rollout.status != "running":
            raise RolloutError(f"the rollout of {flag!r} is {rollout.status}, not running")
        return _with(
            state,
            flag,
            rollout.model_copy(update={"status": "paused", "reason": f"paused by {actor}"}),
        )

    return change


def resume(flag: str, now: float, defaults: FlagSpec) -> Change:
    """Run the current step again from a fresh window (after a pause or a roll-back)."""

    def change(state: FlagState) -> FlagState:
        rollout = _existing(state, flag)
        if rollout.status not in ("paused", "rolled-back"):
            raise RolloutError(f"the rollout of {flag!r} is {rollout.status}; nothing to resume")
        again = rollout.restarted(rollout.step, now)
        return _with(state, flag, again, spec_for(again.current, state.flags.get(flag, defaults)))

    return change


def abort(flag: str, actor: str, defaults: FlagSpec) -> Change:
    def change(state: FlagState) -> FlagState:
        rollout = _existing(state, flag)
        if rollout.status in ("completed", "aborted"):
            raise RolloutError(f"the rollout of {flag!r} is already {rollout.status}")
        stopped = rollout.model_copy(
            update={"status": "aborted", "reason": f"aborted by {actor}", "lease_holder": None}
        )
        return _with(state, flag, stopped, _legacy(state.flags.get(flag, defaults)))

    return change


def judge(
    flag: str,
    step_id: str,
    holder: str,
    *,
    now: float,
    lease: float,
    verdict: dict[str, Any] | None,
    action: str,
    defaults: FlagSpec,
) -> Change:
    """The lease holder's write: renew the lease, record the verdict, and ``advance``, ``roll
    back`` or ``hold``. Nothing changes unless ``holder`` still holds the lease (or it is free)
    and the step is still ``step_id``."""

    def change(state: FlagState) -> FlagState:
        rollout = state.rollouts.get(flag)
        if rollout is None or rollout.status != "running" or rollout.step_id != step_id:
            return state
        if rollout.lease_holder not in (None, holder) and rollout.lease_expires > now:
            return state
        update: dict[str, Any] = {"lease_holder": holder, "lease_expires": now + lease}
        if verdict is not None:
            update["last_verdict"] = verdict
        renewed = rollout.model_copy(update=update)
        base = state.flags.get(flag, defaults)
        if action == "rollback":
            reason = verdict["reason"] if verdict else "rolled back"
            back = renewed.model_copy(update={"status": "rolled-back", "reason": reason})
            return _with(state, flag, back, _legacy(base))
        if action == "advance":
            nxt = renewed.restarted(rollout.step + 1, now).model_copy(
                update={"lease_holder": holder, "lease_expires": now + lease}
            )
            if nxt.step == len(nxt.steps) - 1:
                nxt = nxt.model_copy(update={"status": "completed", "lease_holder": None})
            return _with(state, flag, nxt, spec_for(nxt.current, base))
        return _with(state, flag, renewed)

    return change


def _existing(state: FlagState, flag: str) -> RolloutState:
    rollout = state.rollouts.get(flag)
    if rollout is None:
        raise RolloutError(f"no rollout of {flag!r} (start one with `gateway rollout start ROUTE`)")
    return rollout
