"""The ``x-gateway`` extension: who serves an operation today, under which flag, in which state.

Computed from the route plan the dispatcher would pick and the flag runtime's snapshot (its
``view()``: store state over the config's defaults), so it is cheap to fill per request::

    x_gateway(plan, flags.view(), legacy_endpoint="books.get_book", services=("catalog",))
    # {"state": "canary", "served_by": ["catalog", "legacy"], "backend": "catalog",
    #  "flag": {"name": "catalog-books", "mode": "canary", "percentage": 50, "source": "default"},
    #  "legacy_endpoint": "books.get_book", "services": ["catalog"]}

With ``rollouts`` (the shared state's, by flag), an operation whose flag has a rollout also
carries it: ``"rollout": {"status": "running", "step": 2, "steps": [10, 50, 100], "current": 50}``
(``step`` counts from 1, as ``gateway rollout status`` does).

States follow a route's life cycle: ``legacy`` (the legacy app answers), ``shadow`` (one side
answers, the other gets a copy), ``canary`` (a share of callers on the new side), ``new`` (the
service answers everyone), ``retired`` (the legacy view is gone). ``unrouted``: a service route
no configured route sends traffic to (the legacy app answers that path, usually 404).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gateway.context import LEGACY
from gateway.path_template import shape

if TYPE_CHECKING:
    from gateway.rollout.state import RolloutState
    from gateway.route_plan import RoutePlan
    from gateway.settings import RouteSettings


def x_gateway(
    plan: RoutePlan | None,
    flags: Mapping[str, Any],
    *,
    legacy_endpoint: str | None,
    services: Sequence[str],
    retired: bool = False,
    rollouts: Mapping[str, RolloutState] | None = None,
) -> dict[str, Any]:
    """The extension for one operation; ``plan``: the configured route that matches it."""
    extension: dict[str, Any] = {
        "state": "legacy",
        "served_by": [LEGACY],
        "backend": LEGACY,
        "flag": None,
        "legacy_endpoint": legacy_endpoint,
        "services": list(services),
    }
    if plan is None or plan.backend == LEGACY:
        if legacy_endpoint is None:
            extension.update(state="unrouted", served_by=[])
        return extension
    backend = plan.backend
    extension["backend"] = backend
    if plan.flag is None:
        extension.update(state="retired" if retired else "new", served_by=[backend])
        return extension
    spec = flags.get("flags", {}).get(plan.flag, {})
    mode = spec.get("mode", "legacy")
    percentage = spec.get("percentage", 0)
    extension["flag"] = {
        "name": plan.flag,
        "mode": mode,
        "percentage": percentage,
        "source": spec.get("source", "default"),
    }
    extension["state"] = "retired" if retired else mode
    rollout = (rollouts or {}).get(plan.flag)
    if rollout is not None:
        extension["rollout"] = {
            "status": rollout.status,
            "step": rollout.step + 1,
            "steps": list(rollout.steps),
            "current": rollout.current,
        }
    if flags.get("kill_switch", False):
        extension.update(served_by=[LEGACY], kill_switch=True)
    elif mode == "new":
        extension["served_by"] = [backend]
    elif mode == "canary":
        extension["served_by"] = [
            side for side, share in ((backend, percentage), (LEGACY, 100 - percentage)) if share
        ]
    elif mode == "shadow":
        primary_new = plan.shadow is not None and plan.shadow.primary == "new"
        primary, copy = (backend, LEGACY) if primary_new else (LEGACY, backend)
        extension.update(served_by=[primary], shadow_copy_to=copy)
    return extension


def retired_routes(routes: Iterable[RouteSettings]) -> frozenset[tuple[str, str]]:
    """(shape, method) of every configured route marked retired (``[routes.retired]``, when the
    settings have it; older settings have no such key and nothing is retired)."""
    return frozenset(
        (shape(route.path), method)
        for route in routes
        if getattr(route, "retired", None)
        for method in route.methods
    )


def describe(extension: Mapping[str, Any]) -> str:
    """One Markdown line for people reading Swagger UI, which shows no operation extensions:
    ``Today: **canary**, served by catalog, legacy; flag `catalog-books` (canary, 50%).``"""
    served = ", ".join(extension["served_by"]) or "nobody (no configured route)"
    line = f"Today: **{extension['state']}**, served by {served}"
    flag = extension.get("flag")
    if flag is not None:
        share = f", {flag['percentage']}%" if flag["mode"] == "canary" else ""
        line += f"; flag `{flag['name']}` ({flag['mode']}{share})"
    rollout = extension.get("rollout")
    if rollout is not None:
        current = rollout["current"] if rollout["current"] == "shadow" else f"{rollout['current']}%"
        line += (
            f"; rollout {rollout['status']} at step {rollout['step']}/{len(rollout['steps'])}"
            f" ({current})"
        )
    if extension.get("kill_switch"):
        line += "; the kill switch is on"
    return line + "."
