"""``gateway check``: no template or module of the legacy app calls ``url_for`` on an endpoint
that no rule can build.

Deleting a Flask view (after ``gateway retire``) turns every ``url_for`` naming its endpoint
into a ``BuildError``, a 500 on whatever page renders it. The retired route's build-only rule
(``gateway.flask_support.add_retired_rules``) prevents that; this check finds the calls that
would still fail, by file and line, before a user does::

    problems = url_for_problems(flask_app)   # ["legacy_flask/templates/index.html:9: ..."]

Only calls whose endpoint is a string constant are checked (``url_for("admin.list_users")``);
relative names (``".index"``) depend on the blueprint that renders them and are skipped.
Templates are parsed with the app's own Jinja environment, Python modules with ``ast``: those
under the app's and its blueprints' folders, when their import names are modules.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError, nodes

from gateway.scaffold.rules import display_path


def url_for_problems(app: Any) -> list[str]:
    """One line per ``url_for`` call on an endpoint the app cannot build; ``[]`` for a WSGI
    app that is not Flask."""
    url_map = getattr(app, "url_map", None)
    if url_map is None or not hasattr(app, "jinja_env"):
        return []
    buildable = {rule.endpoint for rule in url_map.iter_rules()}
    calls = [*_template_calls(app), *_module_calls(app)]
    return [
        f"{where}: url_for({endpoint!r}): no rule builds this endpoint (its view was deleted? "
        "`gateway retire` keeps a retired route's endpoint buildable)"
        for where, endpoint in calls
        if not endpoint.startswith(".") and endpoint not in buildable
    ]


def _template_calls(app: Any) -> Iterator[tuple[str, str]]:
    env = app.jinja_env
    loader = env.loader
    if loader is None:
        return
    for name in sorted(set(env.list_templates())):
        try:
            source, filename, _ = loader.get_source(env, name)
            tree = env.parse(source, name, filename)
        except TemplateSyntaxError:
            continue  # rendering reports it; this check is about url_for only
        shown = display_path(filename or name)
        for call in tree.find_all(nodes.Call):
            callee = call.node
            if isinstance(callee, nodes.Name) and callee.name == "url_for" and call.args:
                first = call.args[0]
                if isinstance(first, nodes.Const) and isinstance(first.value, str):
                    yield f"{shown}:{call.lineno}", first.value


def _module_calls(app: Any) -> Iterator[tuple[str, str]]:
    owners = [app, *getattr(app, "blueprints", {}).values()]
    roots = {Path(owner.root_path) for owner in owners if _is_module(owner.import_name)}
    files = sorted(
        {
            file
            for root in roots
            if root.is_dir()
            for file in root.rglob("*.py")
            if not _skipped(file.relative_to(root))
        }
    )
    for file in files:
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            callee = node.func
            name = callee.id if isinstance(callee, ast.Name) else getattr(callee, "attr", None)
            first = node.args[0]
            if (
                name == "url_for"
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                yield f"{display_path(str(file))}:{node.lineno}", first.value


def _is_module(import_name: str) -> bool:
    """Whether ``import_name`` names a module, so its ``root_path`` is the app's code. Flask
    falls back to the working directory for a name that is none (``Flask("legacy")``), which
    would scan the whole project (its tests, other apps) as if it were this app's."""
    module = sys.modules.get(import_name)
    if module is not None:
        return getattr(module, "__file__", None) is not None
    try:
        return importlib.util.find_spec(import_name) is not None
    except (ImportError, ValueError):
        return False


def _skipped(relative: Path) -> bool:
    """Not the app's code: hidden folders (``.venv``, ``.tox``) and installed packages, which an
    app kept in a single module at the project's root would otherwise drag in."""
    return any(part.startswith(".") or part in _NOT_APP_CODE for part in relative.parts[:-1])


_NOT_APP_CODE = frozenset({"site-packages", "node_modules", "__pycache__", "venv"})
