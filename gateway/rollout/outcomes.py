"""What each worker saw of a rollout's current step, for its worker report.

The request path calls ``observe`` once per finished request (a dictionary lookup when no
rollout is running); the report carries ``snapshot()``; the deciding process adds every
worker's snapshot up with ``merge_outcomes``::

    outcomes = RolloutOutcomes(shadow_results, routes_by_flag)
    outcomes.follow(state)                    # on every flag state: which steps are running
    outcomes.observe(facts, 200, 0.004)       # per request
    report["rollouts"] = outcomes.snapshot()
    merge_outcomes(reports, "catalog-books", step_id)   # -> StepOutcomes
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.context import RequestFacts
from gateway.flags.model import FlagState
from gateway.rollout.analysis import SideOutcomes, StepOutcomes
from gateway.route_plan import RoutePlan
from gateway.shadow.results import ShadowResults

#: Durations kept per side and step in each worker (a uniform reservoir sample past it).
RESERVOIR = 1000


class _Side(SideOutcomes):
    """One side's outcomes as a worker records them: the same fields the analysis reads."""

    __slots__ = ()

    def add(self, seconds: float, *, error: bool, fallback: bool) -> None:
        self.requests += 1
        self.errors += error
        self.fallbacks += fallback
        if len(self.durations) < RESERVOIR:
            self.durations.append(seconds)
        else:  # Vitter's algorithm R: every duration of the step equally likely to be kept
            slot = random.randrange(self.requests)  # noqa: S311 - sampling, not a secret
            if slot < RESERVOIR:
                self.durations[slot] = seconds


@dataclass(slots=True)
class _Step:
    step_id: str
    legacy: _Side = field(default_factory=_Side)
    new: _Side = field(default_factory=_Side)
    breaker_opened: int = 0
    #: Shadow counts of the flag's routes when this worker first saw the step.
    shadow_baseline: tuple[int, int] = (0, 0)


class RolloutOutcomes:
    def __init__(self, shadow: ShadowResults, routes_by_flag: Mapping[str, Sequence[str]]) -> None:
        self._shadow = shadow
        self._routes = routes_by_flag
        #: Running rollouts' current steps, by flag; empty means nothing to record.
        self._steps: dict[str, _Step] = {}
        #: Bumped on every change, so the report publisher can tell there is news.
        self.version = 0

    def follow(self, state: FlagState) -> None:
        """Track the running rollouts' steps (a new step starts from zero)."""
        steps: dict[str, _Step] = {}
        for flag, rollout in state.rollouts.items():
            if rollout.status != "running":
                continue
            known = self._steps.get(flag)
            if known is not None and known.step_id == rollout.step_id:
                steps[flag] = known
            else:
                steps[flag] = _Step(rollout.step_id, shadow_baseline=self._shadow_counts(flag))
        self._steps = steps
        self.version += 1

    def observe(self, facts: RequestFacts, status: int | None, seconds: float) -> None:
        """Count one finished request of a flag under rollout (nothing otherwise)."""
        if not self._steps:
            return
        decision = facts.decision
        if decision is None or decision.reason == "shadow":
            return
        step = self._steps.get(decision.flag)
        if step is None:
            return
        self.version += 1
        if facts.breaker == "open":
            step.breaker_opened += 1
            return
        error = status is None or status >= 500
        if facts.fallback is not None:
            # The new side failed and legacy answered: a new-side error the client did not see.
            step.new.add(seconds, error=True, fallback=True)
        elif decision.side == "new":
            step.new.add(seconds, error=error or facts.failure is not None, fallback=False)
        else:
            step.legacy.add(seconds, error=error, fallback=False)

    def snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for flag, step in self._steps.items():
            compared, mismatches = self._shadow_counts(flag)
            base_compared, base_mismatches = step.shadow_baseline
            out[flag] = {
                "step_id": step.step_id,
                "legacy": _side_json(step.legacy),
                "new": _side_json(step.new),
                "breaker_opened": step.breaker_opened,
                "compared": compared - base_compared,
                "mismatches": mismatches - base_mismatches,
            }
        return out

    def _shadow_counts(self, flag: str) -> tuple[int, int]:
        compared = mismatches = 0
        for label in self._routes.get(flag, ()):
            results = self._shadow.routes.get(label)
            if results is None:
                continue
            counts = results.counts
            # A noisy answer is also counted as a match; a candidate that failed to answer is a
            # mismatch as far as the rollout is concerned.
            failed = counts["mismatches"] + counts["candidate_errors"]
            compared += counts["matches"] + failed
            mismatches += failed
        return compared, mismatches


def _side_json(side: _Side) -> dict[str, Any]:
    return {
        "requests": side.requests,
        "errors": side.errors,
        "fallbacks": side.fallbacks,
        "durations": [round(d, 6) for d in side.durations],
    }


def merge_outcomes(reports: Sequence[Mapping[str, Any]], flag: str, step_id: str) -> StepOutcomes:
    """Every worker's outcomes of one step, added up (other steps' numbers are ignored)."""
    total = StepOutcomes()
    for report in reports:
        entry = report.get("rollouts", {}).get(flag)
        if not isinstance(entry, dict) or entry.get("step_id") != step_id:
            continue
        for name in ("legacy", "new"):
            side, seen = getattr(total, name), entry.get(name, {})
            _add(side, seen)
        total.breaker_opened += int(entry.get("breaker_opened", 0))
        total.compared += int(entry.get("compared", 0))
        total.mismatches += int(entry.get("mismatches", 0))
    return total


def _add(side: SideOutcomes, seen: Mapping[str, Any]) -> None:
    side.requests += int(seen.get("requests", 0))
    side.errors += int(seen.get("errors", 0))
    side.fallbacks += int(seen.get("fallbacks", 0))
    side.durations.extend(float(d) for d in seen.get("durations", ()))


def labels_by_flag(plans: Iterable[RoutePlan]) -> dict[str, list[str]]:
    """Each flag's routes, as shadow results name them (``GET /api/me``)."""
    labels: dict[str, list[str]] = {}
    for plan in plans:
        if plan.flag is not None:
            labels.setdefault(plan.flag, []).append(plan.label)
    return labels
