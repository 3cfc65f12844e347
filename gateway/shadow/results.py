"""What shadowing found, per route: counts, the noise learned, and recent mismatches.

One ``ShadowResults`` lives in each worker process. ``snapshot()`` is plain JSON; the report
(the admin API, ``gateway shadow report``) merges the snapshots of every live worker with
``merge_snapshots``::

    results = ShadowResults(keep=100)
    results.count("/api/me", "matches")
    results.mismatch(Mismatch(route="/api/me", ...))
    merge_snapshots([results.snapshot(), other_worker_snapshot])
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from gateway.shadow.compare import Difference

Outcome = Literal[
    "sampled",  # a copy went to the candidate
    "matches",  # the candidate answered like the primary (noise aside)
    "mismatches",  # it did not
    "noisy",  # matched only because the differing fields are known noise
    "candidate_errors",  # the candidate raised or timed out
    "calibrations",  # the primary was asked twice to learn noise
]
COUNTERS: tuple[Outcome, ...] = (
    "sampled",
    "matches",
    "mismatches",
    "noisy",
    "candidate_errors",
    "calibrations",
)
#: Noise patterns kept per route: a body with more volatile fields than this is all noise.
MAX_NOISE = 200


@dataclass(slots=True)
class Mismatch:
    """One request whose two answers differed; every value already redacted."""

    at: float
    request_id: str
    route: str
    method: str
    path: str
    primary: str
    candidate: str
    primary_status: int
    candidate_status: int
    differences: list[dict[str, Any]]

    @classmethod
    def build(cls, differences: list[Difference], **fields: Any) -> Mismatch:
        rows = [
            {"pointer": d.pointer, "kind": d.kind, "primary": d.primary, "candidate": d.candidate}
            for d in differences
        ]
        return cls(differences=rows, **fields)


@dataclass(slots=True)
class RouteResults:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    #: Why eligible requests were not shadowed: ``concurrency``, ``body-too-large``, ...
    skipped: dict[str, int] = field(default_factory=dict)
    #: JSON Pointer patterns seen differing between two primary answers.
    noise: set[str] = field(default_factory=set)


class ShadowResults:
    def __init__(self, *, keep: int = 100) -> None:
        self.routes: dict[str, RouteResults] = {}
        self.recent: deque[Mismatch] = deque(maxlen=keep)
        #: Bumped on every change, so a publisher can tell whether there is news.
        self.version = 0

    def _route(self, route: str) -> RouteResults:
        results = self.routes.get(route)
        if results is None:
            results = self.routes[route] = RouteResults()
        return results

    def count(self, route: str, outcome: Outcome) -> None:
        self._route(route).counts[outcome] += 1
        self.version += 1

    def skip(self, route: str, reason: str) -> None:
        skipped = self._route(route).skipped
        skipped[reason] = skipped.get(reason, 0) + 1
        self.version += 1

    def learn_noise(self, route: str, patterns: set[str]) -> None:
        noise = self._route(route).noise
        for pattern in patterns:
            if len(noise) >= MAX_NOISE:
                break
            noise.add(pattern)
        self.version += 1

    def noise(self, route: str) -> frozenset[str]:
        results = self.routes.get(route)
        return frozenset(results.noise) if results is not None else frozenset()

    def mismatch(self, mismatch: Mismatch) -> None:
        self._route(mismatch.route).counts["mismatches"] += 1
        self.recent.append(mismatch)
        self.version += 1

    def counts(self) -> dict[str, tuple[dict[str, int], dict[str, int]]]:
        """Per route label: its running counts and skip reasons (read by ``gateway.metrics``)."""
        return {route: (r.counts, r.skipped) for route, r in self.routes.items()}

    def snapshot(self) -> dict[str, Any]:
        return {
            "routes": {
                route: {**r.counts, "skipped": dict(r.skipped), "noise": sorted(r.noise)}
                for route, r in sorted(self.routes.items())
            },
            "recent": [asdict(m) for m in self.recent],
        }


def merge_snapshots(snapshots: list[dict[str, Any]], *, keep: int = 100) -> dict[str, Any]:
    """Add up several workers' snapshots: counts summed, noise united, newest mismatches kept."""
    routes: dict[str, dict[str, Any]] = {}
    recent: list[dict[str, Any]] = []
    for snapshot in snapshots:
        for route, row in snapshot.get("routes", {}).items():
            into = routes.setdefault(
                route, {**dict.fromkeys(COUNTERS, 0), "skipped": {}, "noise": []}
            )
            for counter in COUNTERS:
                into[counter] += int(row.get(counter, 0))
            for reason, number in row.get("skipped", {}).items():
                into["skipped"][reason] = into["skipped"].get(reason, 0) + int(number)
            into["noise"] = sorted({*into["noise"], *row.get("noise", [])})
        recent.extend(snapshot.get("recent", []))
    recent.sort(key=lambda m: m.get("at", 0), reverse=True)
    return {"routes": dict(sorted(routes.items())), "recent": recent[:keep]}
