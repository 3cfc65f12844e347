"""A rollout as the flag store keeps it: shared by every worker of every host.

It lives in the flag state document (``FlagState.rollouts``, by flag name) so one atomic store
update moves the flag and the rollout together, and every process sees both within a second::

    {"catalog-books": {"route": "GET /api/books", "steps": ["shadow", 10, 50, 100],
                       "step": 1, "status": "running", "step_id": "3f9c0a1b2c4d",
                       "step_started": 1764920000.0, "lease_holder": "host-a:4242",
                       "lease_expires": 1764920015.0, "reason": null, "last_verdict": null}}
"""

from __future__ import annotations

import secrets
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict

#: A step: the share of users on the new side, or ``"shadow"`` (legacy answers, new is compared).
Step = int | Literal["shadow"]
RolloutStatus = Literal["running", "paused", "rolled-back", "completed", "aborted"]
STATUSES: tuple[RolloutStatus, ...] = get_args(RolloutStatus)


class RolloutState(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The route the rollout was started for (``GET /api/books``); its flag may serve others.
    route: str
    steps: tuple[Step, ...]
    #: Index into ``steps``.
    step: int = 0
    status: RolloutStatus = "running"
    #: Changes whenever a step (re)starts, so outcomes of an earlier try never count.
    step_id: str = ""
    #: Unix time the current step started.
    step_started: float = 0.0
    #: The process deciding for everyone, until ``lease_expires`` (Unix time).
    lease_holder: str | None = None
    lease_expires: float = 0.0
    #: Why it paused, rolled back or was aborted (who, or the verdict).
    reason: str | None = None
    #: The latest analysis: status, reason, what was measured.
    last_verdict: dict[str, Any] | None = None

    @property
    def current(self) -> Step:
        return self.steps[self.step]

    def restarted(self, step: int, now: float) -> RolloutState:
        """The rollout at ``step``, running, with a fresh window."""
        return self.model_copy(
            update={
                "step": step,
                "status": "running",
                "step_id": new_step_id(),
                "step_started": now,
                "reason": None,
                "last_verdict": None,
            }
        )


def new_step_id() -> str:
    return secrets.token_hex(6)
