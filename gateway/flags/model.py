"""Flags as data: what an operator sets, what the stores share, what a request gets decided.

A flag's live state is a ``FlagSpec``; every store holds a ``FlagState`` (all flags plus the
kill switch) as JSON, so a file, a Redis key and the admin API all speak the same shape::

    {"version": 3, "kill_switch": false,
     "flags": {"catalog-books": {"mode": "canary", "percentage": 10}}}
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.rollout.state import RolloutState

Mode = Literal["legacy", "new", "canary", "shadow"]
Side = Literal["legacy", "new"]
Reason = Literal[
    "default",  # the flag's mode decided (legacy / new)
    "shadow",  # shadow mode: the route's primary answers, the other side gets a copy
    "targeting",  # an allow or deny list decided
    "split",  # the sticky percentage bucket decided
    "override",  # a QA override header decided
    "kill-switch",  # everything goes to legacy
    "store-unavailable",  # no state could be read yet: the config's defaults decided
    "no-bucket-key",  # an anonymous caller with no fallback key: legacy
    "provider",  # an OpenFeature provider decided (its own reason is in ``detail``)
]

FLAG_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def check_flag_names(flags: dict[str, FlagSpec]) -> dict[str, FlagSpec]:
    for name in flags:
        if not FLAG_NAME.match(name):
            raise ValueError(f"flag name {name!r} must match {FLAG_NAME.pattern}")
    return flags


class FlagSpec(BaseModel):
    """One flag's state: the mode, the rollout percentage, and targeting lists."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Mode = "legacy"
    #: For ``canary``: the share of bucket keys sent to the new side, 0-100.
    percentage: Annotated[int, Field(ge=0, le=100)] = 0
    allow_subjects: frozenset[str] = frozenset()
    deny_subjects: frozenset[str] = frozenset()
    allow_roles: frozenset[str] = frozenset()
    deny_roles: frozenset[str] = frozenset()


class Recording(BaseModel):
    """A ``gateway record`` request that every worker follows: record each request of the route
    until its samples file holds ``target`` samples, or until ``until`` (a Unix time) passes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: Annotated[int, Field(ge=1)]
    until: float


class FlagState(BaseModel):
    """Everything a store shares: every flag's spec and the kill switch (and the recordings
    ``gateway record`` asked for, by route label: ``GET /api/me``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 0
    kill_switch: bool = False
    flags: dict[str, FlagSpec] = Field(default_factory=dict)
    #: Rollouts in progress (or stopped), by the flag they move (``gateway.rollout``).
    rollouts: dict[str, RolloutState] = Field(default_factory=dict)
    recordings: dict[str, Recording] = Field(default_factory=dict)

    _names = field_validator("flags")(lambda value: check_flag_names(value))


@dataclass(frozen=True, slots=True)
class FlagDecision:
    flag: str
    side: Side
    reason: Reason
    #: The bucket (1-100) when the split decided, for the log line.
    bucket: int | None = None
    #: The OpenFeature provider's reason, when a provider decided.
    detail: str | None = None
