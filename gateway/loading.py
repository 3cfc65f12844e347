"""Turn an import string from the config into an application object.

``module:attribute`` names either an application or a factory. A plain (synchronous) function or
a class is a factory and is called with the ``options`` table as keyword arguments. The
application itself is anything else: an app object (Flask, FastAPI), an ``async def`` ASGI
callable, or a WSGI function whose parameters are ``(environ, start_response)``. (uvicorn asks for
``--factory``; the gateway can tell them apart, so it does not.)::

    flask_app = load_app("legacy_flask:create_app", {"database": "db"}, "gateway.toml", "legacy")
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError, StartupError


def add_import_paths(config_source: str) -> None:
    """Make apps next to the config file, and in the working directory, importable.

    uvicorn does the same with ``--app-dir`` (default ``.``); a console script's ``sys.path``
    starts with its own ``bin/`` directory instead.
    """
    for folder in (Path.cwd(), Path(config_source).resolve().parent):
        entry = str(folder)
        if entry not in sys.path:
            sys.path.insert(0, entry)


def load_app(import_string: str, options: Mapping[str, Any], source: str, key: str) -> Any:
    """Import and, for a factory, call; raise ``ConfigError``/``StartupError`` naming the key."""
    target = import_object(import_string, source, f"{key}.app")
    if not _is_factory(target):
        if options:
            raise ConfigError.at(
                source,
                f"{key}.options",
                f"{import_string!r} is an application, not a factory, so it takes no options",
            )
        return target
    try:
        inspect.signature(target).bind(**options)
    except TypeError as exc:
        problem = f"{import_string!r} rejects them: {exc}"
        raise ConfigError.at(source, f"{key}.options", problem) from None
    try:
        return target(**options)
    except Exception as exc:
        raise StartupError(f"{key}: factory {import_string!r} failed: {exc!r}") from exc


def import_object(import_string: str, source: str, key: str) -> Any:
    """Import ``module:attribute`` as it is; raise ``ConfigError`` naming ``key`` if it fails."""
    module_name, _, attribute = import_string.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigError.at(source, key, f"no module named {exc.name!r}") from None
        raise StartupError(f"{key}: importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:
        raise StartupError(f"{key}: importing {module_name!r} failed: {exc!r}") from exc

    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError.at(
                source, key, f"{module_name!r} has no attribute {attribute!r}"
            ) from None
    return target


def _is_factory(target: Any) -> bool:
    if inspect.isclass(target):
        return True
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        return False
    if inspect.iscoroutinefunction(target):
        return False  # an ASGI app written as a function
    parameters = list(inspect.signature(target).parameters)
    return parameters[:2] != ["environ", "start_response"]
