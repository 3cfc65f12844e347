"""``gateway retire ROUTE``: end a route's migration, once the evidence says it is safe.

It refuses (``RetireRefused``, saying what is missing) unless the route's flag sends everyone to
the new side (mode ``new``, nobody denied, the kill switch off) and the running workers'
record (``gateway.reports``) shows no shadow mismatch, no candidate error, no fallback and no
breaker trip for it. Then it edits ``gateway.toml``: the route loses its flag, shadow,
fallback, breaker, record and rollout settings and gains ``[routes.retired]`` (the Flask
endpoint and rule), so the service serves it alone and ``url_for`` of the endpoint keeps
building once the view is deleted. The flag leaves the flag store when no other route uses
it. It prints which Flask view and which tests can now be deleted::

    print(retire(Path("gateway.toml"), "GET /admin/users", os.environ))
"""

from __future__ import annotations

import asyncio
import copy
import getpass
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import Table

from gateway.build import build_flags, build_storage
from gateway.config_file import (
    append_table,
    check_writable,
    parse_config,
    remove_table,
    stage_config,
    write_file,
)
from gateway.context import LEGACY
from gateway.errors import StoreUnavailable
from gateway.flags.hygiene import FlagNotFound, delete_flag
from gateway.loading import add_import_paths, load_app
from gateway.reports import ReportStore, combine_reports
from gateway.route_lookup import find_route
from gateway.route_plan import route_label
from gateway.scaffold.config_edit import retired_comment, scaffold_comment
from gateway.scaffold.rules import FlaskRoute, display_path, find_flask_route
from gateway.settings import RouteSettings, Settings, load_settings

#: The keys of a ``[[routes]]`` entry that only mean something while legacy can still answer.
MIGRATION_KEYS = (
    "flag",
    "shadow",
    "fallback",
    "fallback_max_body",
    "breaker",
    "record",
    "rollout",
)


class RetireRefused(Exception):
    """The evidence for retiring is not there yet; the message lists what is missing."""


def flag_name(route: RouteSettings) -> str | None:
    """The route's flag (the one place that knows how a route spells it)."""
    return route.flag


def retire(config: Path, text: str, environ: Mapping[str, str], *, force: bool = False) -> str:
    """Retire the route ``text`` names; the report to print. ``RouteNotFound``,
    ``RuleNotFound``, ``ConfigError`` or ``RetireRefused`` with nothing changed."""
    parse_config(config)
    settings = load_settings(config, environ)
    found = find_route(settings, text)
    route = found.settings
    where = f"{settings.source}: routes[{found.index}]"
    if route.retired is not None:
        return f"nothing to do: {found.label} is already retired ({where})"
    if route.backend == LEGACY:
        raise RetireRefused(f"{found.label} is served by legacy ({where}): there is no service")
    add_import_paths(settings.source)
    flask_app = load_app(settings.legacy.app, settings.legacy.options, settings.source, "legacy")
    views = {m: find_flask_route(flask_app, m, route.path) for m in route.methods}
    endpoints = {view.endpoint for view in views.values()}
    if len(endpoints) > 1:
        raise RetireRefused(
            f"{where} covers several Flask views ({', '.join(sorted(endpoints))}): "
            "give each method its own [[routes]] entry, then retire them one by one"
        )
    view = views[found.method]
    check_writable(config)

    name = flag_name(route)
    others = [
        i
        for i, other in enumerate(settings.routes)
        if i != found.index and flag_name(other) == name
    ]
    shared = name is not None and bool(others)
    missing, notes = asyncio.run(_evidence(settings, route, name))
    if missing and not force:
        raise RetireRefused(
            f"{found.label} is not ready:\n" + "\n".join(f"  - {line}" for line in missing)
        )
    new_text = retire_edit(
        config.read_text(encoding="utf-8"),
        found.index,
        endpoint=view.endpoint,
        rule=view.rule,
        flag_heir=others[0] if shared else None,
    )
    retired_settings = stage_config(config, new_text)
    write_file(config, new_text)
    lines = [
        *(f"warning: --force: {line}" for line in missing if force),
        f"retired {found.label}: service {route.backend} serves it alone ({where})",
    ]
    if name is not None and not shared:
        # With the new config's flags, so the store's audit line shows the flag gone.
        lines.append(asyncio.run(_delete_flag(retired_settings, name)))
    elif name is not None:
        lines.append(
            f"flag {name} stays: other routes use it (its declaration is on routes[{others[0]}])"
        )
    lines += notes
    lines.append(
        "restart (or reload) the running gateways now: until then they serve the route with "
        "the old config; delete the view only after that"
    )
    lines += _deletable(config.resolve().parent, view)
    return "\n".join(lines)


def retire_edit(text: str, index: int, *, endpoint: str, rule: str, flag_heir: int | None) -> str:
    """``text`` with ``routes[index]`` retired (comments and layout kept). When the route
    declares a flag other routes still name, ``routes[flag_heir]`` takes the declaration."""
    doc = tomlkit.parse(text)
    entry = doc["routes"][index]
    declaration = entry.get("flag")
    comments = _comment_change(entry, declaration)
    if flag_heir is not None and isinstance(declaration, Table):
        heir = doc["routes"][flag_heir]
        remove_table(heir, "flag")  # the bare name; the table says the same and more
        append_table(heir, "flag", copy.deepcopy(declaration))
    for key in MIGRATION_KEYS:
        if key in entry:
            remove_table(entry, key)
    retired = tomlkit.table()
    retired.add("endpoint", endpoint)
    retired.add("rule", rule)
    append_table(entry, "retired", retired)
    edited = tomlkit.dumps(doc)
    if comments is not None:
        edited = edited.replace(*comments, 1)
    if text.endswith("\n") and not text.endswith("\n\n"):
        edited = edited.rstrip("\n") + "\n"  # the removed tables' blank line, at the end
    return edited


def _comment_change(entry: Table, declaration: object) -> tuple[str, str] | None:
    """The scaffold's comment above the route, and what replaces it: it describes the
    migration that retiring ends."""
    methods = entry.get("methods")
    if not (isinstance(methods, list) and len(methods) == 1):
        return None
    name = declaration.get("name") if isinstance(declaration, Table) else declaration
    method, template, service = str(methods[0]), str(entry.get("path")), str(entry.get("backend"))
    scaffolded = scaffold_comment(method, template, service, str(name))
    retired = retired_comment(method, template, service)
    return _as_comment(scaffolded), _as_comment(retired)


def _as_comment(text: str) -> str:
    return "".join(f"# {line}\n" for line in text.splitlines())


async def _evidence(
    settings: Settings, route: RouteSettings, name: str | None
) -> tuple[list[str], list[str]]:
    """What is missing before the route can be retired, and notes worth printing anyway."""
    missing: list[str] = []
    notes: list[str] = []
    if name is not None:
        missing += await _flag_problems(settings, name)
    store = ReportStore(build_storage(settings))
    try:
        reports = await store.read()
    except Exception as exc:  # a store that is down is missing evidence, not a crash
        missing.append(f"cannot read the worker reports from {store.description}: {exc}")
        return missing, notes
    finally:
        await store.close()
    if not reports:
        missing.append(
            "no running gateway reports its shadow and fallback record (it lives in the "
            "workers): retire while `gateway serve` runs with this config"
        )
        return missing, notes
    combined: dict[str, Any] = combine_reports(reports)
    label = route_label(route.methods, route.path)
    shadow = combined["shadow"]["routes"].get(label, {})
    for counter, what in (("mismatches", "mismatch(es)"), ("candidate_errors", "error(s)")):
        if shadow.get(counter):
            missing.append(
                f"shadow traffic found {shadow[counter]} {what} "
                "(`gateway shadow report` shows them)"
            )
    if combined["fallbacks"].get(label):
        missing.append(
            f"{combined['fallbacks'][label]} request(s) fell back to legacy "
            "(the service raised, timed out or answered 5xx)"
        )
    breaker = combined["breakers"].get(label)
    if breaker is not None and (breaker["state"] != "closed" or _trips(breaker)):
        missing.append(f"the circuit breaker is {breaker['state']} after {_trips(breaker)} trip(s)")
    if not shadow.get("sampled"):
        notes.append(
            f"note: the {len(reports)} running worker(s) compared no shadow copy of this route "
            "since they started"
        )
    return missing, notes


def _trips(breaker: dict[str, Any]) -> int:
    return sum(int(view.get("trips", 0)) for view in breaker.get("workers", {}).values())


async def _flag_problems(settings: Settings, name: str) -> list[str]:
    runtime = build_flags(settings, build_storage(settings))
    try:
        await runtime.start()
        view = runtime.view()
    finally:
        await runtime.stop()
    if not view["store_loaded"]:
        return [f"the flag store {runtime.store.description} is unavailable"]
    spec = view["flags"].get(name, {})
    problems = []
    if spec.get("mode") != "new":
        problems.append(
            f"flag {name} is at mode {spec.get('mode')!r}, not 'new' for everyone "
            f"(`gateway flags set {name} --mode new`)"
        )
    denied = [*spec.get("deny_subjects", ()), *(f"role:{r}" for r in spec.get("deny_roles", ()))]
    if denied:
        problems.append(f"flag {name} still sends {', '.join(sorted(denied))} to legacy")
    if view["kill_switch"]:
        problems.append("the kill switch is on: every flagged route is on legacy now")
    return problems


async def _delete_flag(settings: Settings, name: str) -> str:
    runtime = build_flags(settings, build_storage(settings))
    try:
        await runtime.start()
        # With the new config, where no route declares it: the store entry goes for good.
        await delete_flag(runtime, name, actor=f"{getpass.getuser()} (gateway retire)")
    except FlagNotFound:
        return f"flag {name} removed from the config (the flag store had no entry for it)"
    except StoreUnavailable as exc:
        return f"warning: flag {name} is still in the flag store ({exc}); delete it later"
    finally:
        await runtime.stop()
    return f"flag {name} removed from the config and from the flag store"


def _deletable(base: Path, view: FlaskRoute) -> list[str]:
    """The view, and the test lines that name its endpoint or its path."""
    lines = ["can now be deleted (url_for keeps building: [routes.retired] in the config):"]
    shown = view.view or f"endpoint {view.endpoint}"
    lines.append(f"  Flask view {shown}" + (f" ({view.source})" if view.source else ""))
    tests = base / "tests"
    hits = _references(tests, view) if tests.is_dir() else []
    if hits:
        lines.append("  tests that reference it:")
        lines += [f"    {hit}" for hit in hits]
    else:
        lines.append(f"  no test under {display_path(str(tests))} references it")
    return lines


def _references(tests: Path, view: FlaskRoute) -> list[str]:
    parts = re.split(r"<[^>]+>", view.rule)
    path = r"[^/\"'\s]+".join(re.escape(part) for part in parts)
    pattern = re.compile(
        rf"[\"' ]{path}(?:[\"'?\s]|$)|[\"']{re.escape(view.endpoint)}[\"']",
    )
    hits = []
    for file in sorted(tests.rglob("*.py")):
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if pattern.search(line):
                hits.append(f"{display_path(str(file))}:{number}")
    return hits
