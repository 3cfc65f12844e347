"""What the dashboard and ``gateway status`` show, as JSON: one function per view, from data.

Route states (the life cycle in DESIGN.md): ``legacy`` (legacy only), ``shadow``, ``canary``,
``new`` and ``retired``, decided per route-table row from who serves it and its flag's mode as
it is in effect now (the kill switch sends every flagged route to legacy)::

    status = migration_status(inventory.rows, flags.view(), history, reading)
    rows = route_table(inventory.rows, flags.view(), history, reading)   # the 5-minute numbers
    rollouts = rollout_view(settings.routes, flags.state.rollouts, time.time())
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from gateway.context import LEGACY
from gateway.dashboard.traffic import SIDES, Counts, History, Reading, Side, side_summary
from gateway.inventory import InventoryRow
from gateway.path_template import shape
from gateway.rollout.commands import describe
from gateway.rollout.state import RolloutState
from gateway.settings import RouteSettings

State = Literal["legacy", "shadow", "canary", "new", "retired"]
STATES: tuple[State, ...] = ("legacy", "shadow", "canary", "new", "retired")
#: The windows migration progress is shown over (seconds).
WINDOWS = {"5m": 300.0, "1h": 3_600.0, "24h": 86_400.0}
#: The window the route table's rates, error rates and latencies cover.
ROUTE_WINDOW = 300.0
#: How far back the plots go.
SERIES_SPAN = 900.0
_SHADOW_OUTCOMES = ("match", "mismatch", "noisy", "candidate_error")


def route_state(row: InventoryRow, flags: Mapping[str, Any]) -> State | None:
    """The row's state; ``None`` for a row nothing serves (``unrouted``)."""
    # `gateway retire` (issue 13) adds this status; until then no row has it (str(): mypy
    # knows today's statuses and would call the branch unreachable).
    if str(row.status) == "retired":
        return "retired"
    if row.served_by is None:
        return None
    if row.served_by == LEGACY:
        return "legacy"
    if row.flag is None:
        return "new"
    spec = flags["flags"].get(row.flag)
    if flags.get("kill_switch"):
        return "legacy"
    mode = spec["mode"] if spec is not None else "canary"
    if mode == "canary":
        percentage = spec["percentage"] if spec is not None else 50
        return "legacy" if percentage == 0 else "new" if percentage == 100 else "canary"
    return "legacy" if mode == "legacy" else "shadow" if mode == "shadow" else "new"


def migration_status(
    rows: Sequence[InventoryRow], flags: Mapping[str, Any], history: History, now: Reading
) -> dict[str, Any]:
    """Routes per state and the share of requests the new side served over each window: what
    ``gateway status`` prints and the dashboard's top panel shows."""
    states = dict.fromkeys(STATES, 0)
    for row in rows:
        state = route_state(row, flags)
        if state is not None:
            states[state] += 1
    windows = {name: history.window(now, seconds).as_dict() for name, seconds in WINDOWS.items()}
    return {
        "routes": sum(states.values()),
        "states": states,
        "kill_switch": bool(flags.get("kill_switch")),
        "windows": windows,
        "share_new": {name: window["share_new"] for name, window in windows.items()},
    }


def route_table(
    rows: Sequence[InventoryRow], flags: Mapping[str, Any], history: History, now: Reading
) -> list[dict[str, Any]]:
    """Every row with its state, flag and, per side, rate, error rate, p50 and p99 over the
    last five minutes (joined on the route template's shape and the method)."""
    span, before = history.route_baseline(now, ROUTE_WINDOW)
    increases: dict[tuple[str, str], dict[Side, Counts]] = {}
    for (route, method), per_side in now.routes.items():
        earlier = before.routes.get((route, method), {}) if before is not None else {}
        into = increases.setdefault((shape(route), method), {s: Counts() for s in SIDES})
        for side, counts in per_side.items():
            into[side].add(counts.since(earlier.get(side)) if before is not None else Counts())
    table = []
    for row in rows:
        sides = {side: Counts() for side in SIDES}
        for method in row.methods:
            for side, counts in increases.get((shape(row.path), method), {}).items():
                sides[side].add(counts)
        spec = flags["flags"].get(row.flag) if row.flag is not None else None
        table.append(
            {
                **row.as_dict(),
                "state": route_state(row, flags),
                "mode": spec["mode"] if spec is not None else None,
                "percentage": spec["percentage"] if spec is not None else None,
                "sides": {side: side_summary(sides[side], span) for side in SIDES},
            }
        )
    return table


def shadow_view(now: Reading, shadow_report: Mapping[str, Any]) -> dict[str, Any]:
    """Per route the shadow outcomes and the requests not shadowed (from the metrics), and the
    recent mismatches (from the workers' reports) as rows of JSON Pointer, legacy value, new
    value."""
    routes: dict[str, dict[str, Any]] = {}
    empty = {**dict.fromkeys(_SHADOW_OUTCOMES, 0), "skipped": 0}
    for (route, outcome), count in sorted(now.shadow.items()):
        if outcome in _SHADOW_OUTCOMES:
            routes.setdefault(route, dict(empty))[outcome] = round(count)
    for route, count in sorted(now.shadow_skipped.items()):
        routes.setdefault(route, dict(empty))["skipped"] = round(count)
    return {"routes": routes, "recent": group_mismatches(shadow_report)}


def group_mismatches(shadow_report: Mapping[str, Any], *, limit: int = 10) -> list[dict[str, Any]]:
    """The recent mismatches, newest first, those with the same differences on the same route
    shown once with how many there were: a hundred copies of one known difference would hide
    the new one."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for mismatch in shadow_report.get("recent", []):
        shown = _readable(mismatch)
        key = (
            shown["route"],
            shown["legacy_status"],
            shown["new_status"],
            *((d["pointer"], d["kind"], d["legacy"], d["new"]) for d in shown["differences"]),
        )
        if key in groups:
            groups[key]["count"] += 1
        elif len(groups) < limit:
            groups[key] = {**shown, "count": 1}
    return list(groups.values())


def _readable(mismatch: Mapping[str, Any]) -> dict[str, Any]:
    """Which value is legacy's and which the new side's, whichever side was the primary."""
    legacy_primary = mismatch.get("primary") == LEGACY
    differences = [
        {
            "pointer": d["pointer"],
            "kind": d["kind"],
            "legacy": d["primary"] if legacy_primary else d["candidate"],
            "new": d["candidate"] if legacy_primary else d["primary"],
        }
        for d in mismatch.get("differences", [])
    ]
    new_side = mismatch.get("candidate") if legacy_primary else mismatch.get("primary")
    return {
        "at": mismatch.get("at"),
        "request_id": mismatch.get("request_id"),
        "route": mismatch.get("route"),
        "method": mismatch.get("method"),
        "path": mismatch.get("path"),
        "service": new_side,
        "legacy_status": mismatch.get("primary_status" if legacy_primary else "candidate_status"),
        "new_status": mismatch.get("candidate_status" if legacy_primary else "primary_status"),
        "differences": differences,
    }


def resilience_view(now: Reading, breakers: Mapping[str, Any]) -> dict[str, Any]:
    """Breakers (open or not, from the metrics; each worker's state from the reports) and the
    fallbacks since the start, by route and cause."""
    return {
        "breakers": [
            {"route": route, "open": bool(value)}
            for route, value in sorted(now.breakers_open.items())
        ],
        "breaker_workers": dict(breakers),
        "fallbacks": [
            {"route": route, "cause": cause, "count": round(count)}
            for (route, cause), count in sorted(now.fallbacks.items())
            if count
        ],
    }


def rollout_view(
    routes: Iterable[RouteSettings], rollouts: Mapping[str, RolloutState], now: float
) -> dict[str, Any]:
    """Every rollout as ``gateway rollout status --json`` shows it, and the routes one can start
    for: those with a ``[routes.rollout]`` plan whose flag has no rollout running or paused."""
    busy = {flag for flag, r in rollouts.items() if r.status in ("running", "paused")}
    startable = [
        {
            "route": f"{route.methods[0]} {route.path}",
            "flag": route.flag,
            "steps": list(route.rollout.steps),
        }
        for route in routes
        if route.rollout is not None and route.flag is not None and route.flag not in busy
    ]
    return {
        "rollouts": [describe(flag, rollout, now) for flag, rollout in sorted(rollouts.items())],
        "startable": startable,
    }
