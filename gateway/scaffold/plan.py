"""``gateway scaffold METHOD RULE --service NAME``: everything decided and rendered in memory,
validated, and only then written (each file atomically, the config last)::

    plan = plan_scaffold(Path("gateway.toml"), "GET", "/admin/users", "admin", os.environ)
    if plan.files: write_plan(plan)
    print(plan.summary)

A mistake (an unknown rule, a clashing service name, a config that does not parse or is
read-only) raises ``ScaffoldError`` or ``ConfigError`` before any file is touched. Running it
twice changes nothing: the second plan has no files and says so.
"""

from __future__ import annotations

import importlib.util
import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.auth.policy import Policy, build_policies
from gateway.config_file import check_writable, parse_config, stage_config, write_file
from gateway.context import LEGACY
from gateway.inventory import example_path
from gateway.loading import add_import_paths, load_app
from gateway.path_template import shape
from gateway.recording.samples import read_samples, sample_path
from gateway.scaffold.config_edit import add_scaffolded_route, route_flag_name
from gateway.scaffold.models import ModelSource, model_source
from gateway.scaffold.render import (
    MARKER,
    Names,
    add_router,
    parity_test,
    router_module,
    routers_init,
    service_init,
    slug,
)
from gateway.scaffold.rules import FlaskRoute, find_flask_route
from gateway.schema_infer import infer_schema
from gateway.settings import Settings, load_settings

#: A service name that is also a Python package name (so no ``-``).
_PACKAGE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: Where new services go when the config names none to follow.
DEFAULT_SERVICES_PACKAGE = "new_services"


class ScaffoldError(Exception):
    """The scaffold cannot be done as asked; the message says why and what to do instead."""


@dataclass(frozen=True, slots=True)
class ScaffoldPlan:
    config: Path
    #: Path → new content, written in this order (the config last); empty: nothing to do.
    files: dict[Path, str] = field(default_factory=dict)
    summary: str = ""


def plan_scaffold(
    config: Path, method: str, rule: str, service: str, environ: Mapping[str, str]
) -> ScaffoldPlan:
    method = method.upper()
    parse_config(config)  # a syntax error named as file:line, before anything else
    settings = load_settings(config, environ)
    _check_service_name(service)
    add_import_paths(settings.source)
    flask_app = load_app(settings.legacy.app, settings.legacy.options, settings.source, "legacy")
    route = find_flask_route(flask_app, method, rule)

    for index, existing in enumerate(settings.routes):
        if method in existing.methods and shape(existing.path) == shape(route.template):
            if existing.backend == service:
                return ScaffoldPlan(
                    config,
                    summary=f"nothing to do: {route.label} is already scaffolded "
                    f"(service {service}, routes[{index}])",
                )
            raise ScaffoldError(
                f"{route.label} is already routed to {existing.backend!r} "
                f"({settings.source}: routes[{index}]); scaffold it onto that service, or "
                "remove that entry first"
            )
    check_writable(config)

    base = config.resolve().parent
    names, package_dir, new_service = _service_package(settings, service, base)
    names = Names(service, names.package, slug(method, route.template))
    files: dict[Path, str] = {}
    routers_path = package_dir / "routes" / "__init__.py"
    if new_service:
        root_init = package_dir.parent / "__init__.py"
        if not root_init.exists():
            files[root_init] = '"""FastAPI services that take over routes of the legacy app."""\n'
        files[package_dir / "__init__.py"] = service_init(names)
        routers = routers_init(names)
    else:
        routers = routers_path.read_text(encoding="utf-8")
    files[routers_path] = add_router(routers, names)

    samples = read_samples(sample_path(settings.record.dir, method, route.template))
    bodies = [s.response.json() for s in samples if 200 <= s.response.status < 300]
    bodies = [body for body in bodies if body is not None]
    model = _response_model(route, bodies)
    router_path = package_dir / "routes" / f"{names.module}.py"
    files[router_path] = router_module(names, route, _policy(settings, route), model, len(bodies))
    test_path = base / "tests" / f"test_parity_{names.module}.py"
    files[test_path] = parity_test(names, route, config.name)
    for path in (router_path, test_path):
        if path.exists():
            raise ScaffoldError(f"{path} already exists; move it away or scaffold another route")

    flag = _unused_flag_name(settings, route_flag_name(method, route.template))
    text = add_scaffolded_route(
        config.read_text(encoding="utf-8"),
        service=service,
        service_app=f"{names.package}:create_app" if new_service else None,
        method=method,
        template=route.template,
        flag=flag,
    )
    stage_config(config, text)
    files[config] = text
    shown = "\n".join(f"  {_relative(path, base)}" for path in files)
    return ScaffoldPlan(
        config,
        files,
        summary=(
            f"scaffolded {route.label} (Flask view {route.view or route.endpoint}) onto service "
            f"{service}; flag {flag} starts in shadow mode (legacy answers, {service} is "
            f"compared)\nwrote:\n{shown}\n"
            f"next: fill in the handler in {_relative(router_path, base)}, then "
            f"`gateway check` and `pytest {_relative(test_path, base)}`"
        ),
    )


def write_plan(plan: ScaffoldPlan) -> None:
    """Write every file atomically, code before config: the config never names a service
    whose package is not there."""
    for path, text in plan.files.items():
        write_file(path, text)


def _check_service_name(service: str) -> None:
    if service == LEGACY or not _PACKAGE_NAME.match(service) or keyword.iskeyword(service):
        raise ScaffoldError(
            f"service name {service!r} must be lower-case letters, digits and '_' (it is also "
            f"the Python package's name), start with a letter, and not be {LEGACY!r}"
        )


def _service_package(settings: Settings, service: str, base: Path) -> tuple[Names, Path, bool]:
    """The service's package, its folder, and whether it is new."""
    registered = settings.services.get(service)
    if registered is not None:
        module = registered.app.partition(":")[0]
        folder = _package_folder(module) or Path(module.replace(".", "/"))
        routers = folder / "routes" / "__init__.py"
        if not routers.exists() or MARKER not in routers.read_text("utf-8"):
            raise ScaffoldError(
                f"service {service!r} is already registered ({settings.source}: "
                f"services.{service}.app = {registered.app!r}) and was not written by gateway "
                "scaffold (no ROUTERS list in its routes/__init__.py): add the route to it by "
                "hand, or scaffold onto a new service name"
            )
        return Names(service, module, ""), folder, False
    root = _services_root(settings)
    root_folder = _package_folder(root) or base.joinpath(*root.split("."))
    folder = root_folder / service
    if folder.exists():
        raise ScaffoldError(
            f"{folder} already exists but no [services.{service}] names it: pick another "
            "service name, or register that package in the config"
        )
    return Names(service, f"{root}.{service}", ""), folder, True


def _services_root(settings: Settings) -> str:
    """The package the existing services live in (``new_services`` for
    ``new_services.catalog:create_app``), the most common one; the default when none."""
    parents = [
        s.app.partition(":")[0].rpartition(".")[0]
        for s in settings.services.values()
        if "." in s.app.partition(":")[0]
    ]
    return max(set(parents), key=parents.count) if parents else DEFAULT_SERVICES_PACKAGE


def _package_folder(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _policy(settings: Settings, route: FlaskRoute) -> Policy:
    auth = settings.auth
    table = build_policies(
        ((p.path, p.methods, p.access, p.roles) for p in auth.policies), auth.default_access
    )
    return table.lookup(route.method, example_path(route.template))


def _response_model(route: FlaskRoute, bodies: list[Any]) -> ModelSource | None:
    if not bodies:
        return None
    name = "".join(part.capitalize() for part in route.view_name.split("_")) + "Response"
    return model_source(infer_schema(bodies), name)


def _unused_flag_name(settings: Settings, wanted: str) -> str:
    taken = {str(route.flag) for route in settings.routes if route.flag is not None}
    name, number = wanted, 2
    while name in taken:
        name, number = f"{wanted}-{number}", number + 1
    return name


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)
