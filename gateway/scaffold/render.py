"""The source files ``gateway scaffold`` writes, as text (nothing here touches the disk).

For ``gateway scaffold GET /admin/users --service admin``::

    new_services/admin/__init__.py            create_app(**options): FastAPI app with a lifespan
    new_services/admin/routes/__init__.py     ROUTERS = [...]: the tool appends one line per route
    new_services/admin/routes/get_admin_users.py   the handler stub, typed from the Flask rule
    tests/test_parity_get_admin_users.py      parity of the route, one case per recorded sample
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass

from gateway.auth.policy import Policy
from gateway.scaffold.models import ModelSource
from gateway.scaffold.rules import FlaskRoute

#: The marker that tells the tool a ROUTERS list is its own to append to.
MARKER = "Written by ``gateway scaffold``"


@dataclass(frozen=True, slots=True)
class Names:
    #: ``admin``: the service, its package and its ``[services.NAME]`` key.
    service: str
    #: ``new_services.admin``: the package to import.
    package: str
    #: ``get_admin_users``: the router module and the test's slug.
    module: str


def slug(method: str, template: str) -> str:
    """``GET /api/books/{book_id:int}`` → ``get_api_books_book_id`` (a Python identifier)."""
    words = re.sub(r"\{([A-Za-z_]\w*)(?::\w+)?\}", r"\1", template)
    text = re.sub(r"[^A-Za-z0-9]+", "_", f"{method} {words}").strip("_").lower()
    return text or "root"


def service_init(names: Names) -> str:
    return f'''"""The {names.service} service. {MARKER}; edit freely.

``gateway.toml`` registers it as ``[services.{names.service}]``; the keys of
``[services.{names.service}.options]`` become ``create_app``'s keyword arguments.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from gateway.parity import LegacyJSONResponse, install_legacy_error_handlers
from {names.package}.routes import ROUTERS


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Open what the handlers share (a database pool, an HTTP client) here, close it after the
    # yield: the gateway runs this at its own start-up and shut-down.
    yield


def create_app(**options: Any) -> FastAPI:
    app = FastAPI(
        title="{names.service}",
        default_response_class=LegacyJSONResponse,
        lifespan=lifespan,
    )
    app.state.options = options
    # 400/404/405/500 answered with the legacy app's own error bodies.
    install_legacy_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
'''


def routers_init(names: Names) -> str:
    return f'''"""The {names.service} service's routers. {MARKER}, which adds a line per route it
scaffolds (keep the ``ROUTERS`` list for that); edit freely otherwise."""

from __future__ import annotations

from fastapi import APIRouter

ROUTERS: list[APIRouter] = [
]
'''


def add_router(source: str, names: Names) -> str:
    """``routes/__init__.py`` with the new module imported and its router listed last."""
    tree = ast.parse(source)
    assign = next(
        (
            node
            for node in tree.body
            if isinstance(node, ast.AnnAssign | ast.Assign)
            and any(
                isinstance(target, ast.Name) and target.id == "ROUTERS"
                for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            )
        ),
        None,
    )
    if assign is None or not isinstance(assign.value, ast.List) or assign.end_lineno is None:
        raise ValueError("has no ROUTERS = [...] list")
    lines = source.splitlines(keepends=True)
    lines.insert(assign.end_lineno - 1, f"    {names.module}.router,\n")
    # The import goes among the other routers' imports, sorted as ruff's isort would.
    own = f"from {names.package}.routes import "
    line = f"{own}{names.module}\n"
    siblings = [
        node.lineno - 1
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == f"{names.package}.routes"
    ]
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    if siblings:
        later = [i for i in siblings if lines[i] > line]
        lines.insert(later[0] if later else siblings[-1] + 1, line)
    else:
        after = imports[-1].end_lineno or 0 if imports else 0
        lines[after:after] = ["\n", line] if imports else [line]
    return "".join(lines)


def router_module(
    names: Names, route: FlaskRoute, policy: Policy, model: ModelSource | None, samples: int
) -> str:
    typing_names = {"Annotated"} if _needs_annotated(route, policy) else set()
    if any("Literal[" in p.annotation for p in route.params):
        typing_names.add("Literal")
    if model is not None and model.uses_any:
        typing_names.add("Any")
    fastapi_names = {"APIRouter", "HTTPException"}
    if policy.access != "public":
        fastapi_names.add("Depends")
    if any("Path(" in p.annotation for p in route.params):
        fastapi_names.add("Path")
    imports = ["from __future__ import annotations", ""]
    if any(p.annotation == "uuid.UUID" for p in route.params):
        imports.append("import uuid")
    if typing_names:
        imports.append(f"from typing import {', '.join(sorted(typing_names))}")
    if len(imports) > 2:
        imports.append("")
    imports.append(f"from fastapi import {', '.join(sorted(fastapi_names))}")
    if model is not None:
        imports.append(f"from pydantic import {', '.join(['BaseModel', *model.pydantic_imports])}")
    imports.append("")
    if policy.access != "public":
        imports.append("from gateway.context import Identity")
        imports.append("from gateway.fastapi_support import require_roles")
    imports.append("from gateway.parity import LegacyJSONResponse")

    params = [f"{p.name}: {p.annotation}" for p in route.params]
    if policy.access != "public":
        roles = ", ".join(json.dumps(role) for role in sorted(policy.roles))
        # The gateway enforced the policy already; checking here too keeps the service safe
        # when run on its own.
        params.append(f"identity: Annotated[Identity, Depends(require_roles({roles}))]")
    returns = f" -> {model.annotation}" if model is not None else ""
    definition = f"async def {route.view_name}({', '.join(params)}){returns}:"
    if len(definition) > 100:  # as ruff format would wrap it
        lines = "".join(f"    {param},\n" for param in params)
        definition = f"async def {route.view_name}(\n{lines}){returns}:"
    decorator_extra = ""
    if model is not None and not re.fullmatch(r"\w+", model.annotation):
        decorator_extra = f", response_model={model.annotation}"
    docstring = route.docstring or f"{route.label}, moved from the legacy app."
    origin = f"``{route.view}``" if route.view else f"endpoint ``{route.endpoint}``"
    where = f" ({route.source})" if route.source else ""
    model_note = (
        f"The response model was inferred from {samples} recorded sample(s)."
        if model is not None
        else "No samples were recorded, so the response has no model yet "
        "(`gateway record` writes some)."
    )
    body = [
        f'"""{route.label}, moved from the legacy view to the {names.service} service.',
        "",
        f"The view: {origin}{where}.",
        f"{model_note}",
        f"Prove parity with ``pytest tests/test_parity_{names.module}.py``. {MARKER}.",
        '"""',
        "",
        *imports,
        "",
        "router = APIRouter()",
        "",
    ]
    if model is not None:
        body += ["", model.source, ""]
    body += [
        "",
        f'@router.{route.method.lower()}("{route.fastapi_path}", '
        f"response_class=LegacyJSONResponse{decorator_extra})",
        definition,
        _indent_docstring(docstring),
        "    # Until this is written, shadow mode keeps legacy answering and reports the 501s.",
        f'    raise HTTPException(501, "{route.label} is not migrated yet")',
        "",
    ]
    return "\n".join(body)


def parity_test(names: Names, route: FlaskRoute, config_name: str) -> str:
    return f'''"""Parity of {route.label}: the {names.service} service answers as the legacy
view did, one case per recorded sample. {MARKER}."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.testing import ParityCase, parity_cases

CONFIG = Path(__file__).resolve().parent.parent / "{config_name}"


@pytest.mark.parametrize("case", parity_cases("{route.method} {route.template}", config=CONFIG))
def test_parity(case: ParityCase) -> None:
    case.assert_same()
'''


def _needs_annotated(route: FlaskRoute, policy: Policy) -> bool:
    return policy.access != "public" or any("Annotated[" in p.annotation for p in route.params)


def _indent_docstring(text: str) -> str:
    lines = text.replace('"""', '\\"\\"\\"').splitlines() or [""]
    if len(lines) == 1:
        return f'    """{lines[0]}"""'
    inner = "\n".join(f"    {line}" if line else "" for line in lines)
    return f'    """{inner.lstrip()}\n    """'
