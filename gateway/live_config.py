"""Live config reload: read ``gateway.toml`` again and swap the new request path in, or keep the
old one and say why.

What a running gateway can change without a restart is its *request path*: the route plans and
table (and so each route's service, flag, guards and shadow rules), the access policies and
authentication keys, the body limits, the admin roles, the request-head checks and the flags'
defaults. It is rebuilt from the new settings over the parts that live as long as the process
(the legacy app and its thread pool, the services and their lifespans, the flag store, the
shadow runner, tracing, logging, the listening socket), which are never imported or started
again. Keys that only those parts read cannot change live: the reload applies everything else
and names them::

    outcome = await reload_config(app, os.environ)   # app: a running GatewayApp
    outcome.describe()   # "reload: applied; not applied live (restart needed): server.port"

The swap is one assignment on the event loop (``GatewayApp.swap``): a request in flight
finishes on the objects it started with, the next one gets the new ones, and nothing is
dropped. A file that does not load or build (``ConfigError``) changes nothing. A route whose
``[[routes]]`` entry did not change keeps its plan, so its circuit breaker keeps its state.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import structlog
from pydantic import BaseModel
from starlette.types import ASGIApp

from gateway.context import LEGACY
from gateway.errors import ConfigError
from gateway.inventory import Inventory
from gateway.resilience import Breaker, GuardedService
from gateway.route_plan import RoutePlan, route_label
from gateway.routes import RouteTable
from gateway.settings import Settings, load_settings

if TYPE_CHECKING:
    from gateway.app import GatewayApp

log = structlog.get_logger("gateway.reload")

#: Per section, the keys that the request path reads (``build_request_path``) and so apply on
#: a reload; ``ALL``: the whole section. Every other key, and every section not named here
#: (including ones added later), is read only at start: its change is named, not applied.
ALL: frozenset[str] = frozenset({"*"})
LIVE_KEYS: Mapping[str, frozenset[str]] = {
    "routes": ALL,
    "auth": ALL,
    "server": frozenset(
        {"backend_header", "request_id_header", "allowed_hosts", "trusted_proxies", "admin_roles"}
    ),
    "logging": frozenset({"access_log"}),
    "flags": frozenset({"override_header", "override_roles", "anonymous_key"}),
    "limits": frozenset({"max_body_size", "body_timeout", "routes"}),
}


@dataclass(frozen=True, slots=True)
class RequestPath:
    """Everything a reload replaces, built by ``gateway.app``'s ``build_request_path``."""

    settings: Settings
    #: The middleware stack over the dispatcher: what the server calls for every request.
    handler: ASGIApp
    plans: tuple[RoutePlan, ...]
    table: RouteTable[RoutePlan]
    inventory: Inventory
    #: (method, path) → the route template a request refused before routing counts under.
    route_of: Callable[[str, str], str | None]

    @property
    def breakers(self) -> tuple[Breaker, ...]:
        return tuple(plan.breaker for plan in self.plans if plan.breaker is not None)

    @property
    def guards(self) -> tuple[GuardedService, ...]:
        """The routes' service guards (timeouts, fallbacks), whose fallbacks the reports count."""
        return tuple(plan.app for plan in self.plans if isinstance(plan.app, GuardedService))


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What one reload did, as the log line, the worker's status file and ``gateway reload``
    say it."""

    generation: int
    outcome: Literal["applied", "rejected"]
    #: Changed keys read only at start (``server.port``, ``services.orders``): restart for them.
    not_applied_live: tuple[str, ...] = ()
    #: Why a rejected file was rejected: file, key and problem, one per entry.
    problems: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.outcome == "rejected":
            return "reload: rejected, the running config is kept: " + "; ".join(self.problems)
        if self.not_applied_live:
            restart = ", ".join(self.not_applied_live)
            return f"reload: applied; not applied live (restart needed): {restart}"
        return "reload: applied"


def split_live(
    running: Settings, new: Settings, services: Iterable[str]
) -> tuple[Settings, tuple[str, ...]]:
    """``new`` with every key that cannot change live put back as ``running`` has it, and the
    dotted names of those that differ. ``services``: the services this process runs; a route
    naming any other is a ``ConfigError`` (a service is imported and started only at start)."""
    update = {}
    kept: list[str] = []
    for name in type(new).model_fields:
        old_value, new_value = getattr(running, name), getattr(new, name)
        live = LIVE_KEYS.get(name, frozenset())
        if name == "source" or live is ALL or old_value == new_value:
            continue
        if isinstance(new_value, BaseModel) and isinstance(old_value, BaseModel):
            restored = {
                key: getattr(old_value, key)
                for key in type(new_value).model_fields
                if key not in live and getattr(old_value, key) != getattr(new_value, key)
            }
            if restored:
                update[name] = new_value.model_copy(update=restored)
                kept.extend(f"{name}.{key}" for key in restored)
            continue
        update[name] = old_value
        if isinstance(new_value, dict) and isinstance(old_value, dict):
            names = sorted(set(old_value) | set(new_value))
            kept.extend(
                f"{name}.{key}" for key in names if old_value.get(key) != new_value.get(key)
            )
        else:
            kept.append(name)
    # Every key of a [[routes]] entry applies live (``[routes.rollout]`` too: the rollout
    # controller takes every swapped-in path's plans, ``gateway.rollout.controller`` says from
    # when).
    effective = new.model_copy(update=update)
    running_services = {LEGACY, *services}
    for index, route in enumerate(effective.routes):
        if route.backend not in running_services:
            raise ConfigError.at(
                new.source,
                f"routes[{index}].backend",
                f"service {route.backend!r} is not running: a new service starts only with the "
                "gateway (restart it)",
            )
    return effective, tuple(kept)


def keep_unchanged_plans(
    previous: RequestPath, settings: Settings, plans: list[RoutePlan]
) -> list[RoutePlan]:
    """``plans`` (built from ``settings.routes``, in order), where a route configured exactly
    as before keeps its previous plan: its breaker's state survives the reload."""
    before = {
        route_label(route.methods, route.path): (route, plan)
        for route, plan in zip(previous.settings.routes, previous.plans, strict=True)
    }
    kept = []
    for route, plan in zip(settings.routes, plans, strict=True):
        old = before.get(plan.label)
        if old is not None and old[0] == route:
            plan = dataclasses.replace(old[1], config_key=plan.config_key)
        kept.append(plan)
    return kept


async def reload_config(
    app: GatewayApp, environ: Mapping[str, str], generation: int
) -> ReloadOutcome:
    """Read ``app``'s config file again and swap the result in, or keep what runs; log one line.

    Loading and building run on a thread: the event loop keeps serving meanwhile. The swap
    (flag defaults, then the request path) runs on the loop, with no ``await`` in between."""
    running = app.settings
    try:
        new = await asyncio.to_thread(load_settings, running.source, environ)
        effective, not_live = split_live(running, new, app.services)
        path = await asyncio.to_thread(app.rebuild, effective, app.path)
    except ConfigError as exc:
        outcome = ReloadOutcome(generation, "rejected", problems=tuple(exc.problems))
    except Exception as exc:  # an import the new file names fails, a bug: still not applied
        problem = f"{running.source}: {type(exc).__name__}: {exc}"
        outcome = ReloadOutcome(generation, "rejected", problems=(problem,))
    else:
        flags = effective.flags
        app.flags.reconfigure(
            defaults=effective.flag_defaults(),
            anonymous_key=flags.anonymous_key,
            override_roles=flags.override_roles,
        )
        app.swap(path)
        outcome = ReloadOutcome(generation, "applied", not_applied_live=not_live)
    if outcome.outcome == "rejected":
        log.error(
            "config.reload", result=outcome.describe(), generation=generation, config=running.source
        )
    else:
        log.info(
            "config.reload",
            result=outcome.describe(),
            generation=generation,
            config=running.source,
            routes=len(app.table),
        )
    return outcome
