"""A migration gateway: one ASGI process that serves a legacy Flask app and new FastAPI services
on the same URLs, choosing per route (and, with flags, per request) which side answers.

The public names, importable from here::

    from gateway import create_app, load_settings

    app = create_app(load_settings("gateway.toml", os.environ))   # any ASGI server can run it

    from gateway import Identity, require_roles, flask_session   # in a FastAPI service
    from gateway.flask_support import current_request_id         # in legacy Flask code
    from gateway.fastapi_support import current_request_id       # in a FastAPI service

``current_identity``, ``current_request_id`` and ``current_facts`` exist on both sides with
different signatures (Flask reads the request context, FastAPI takes the connection), so they are
imported from ``gateway.flask_support`` or ``gateway.fastapi_support``, both reachable from here.

Importing ``gateway`` imports none of its modules: each name is loaded on first use (PEP 562), so
``import gateway.settings`` in a small tool does not build Flask, FastAPI and the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway import fastapi_support, flask_support
    from gateway.app import GatewayApp, create_app
    from gateway.context import Identity, RequestFacts
    from gateway.errors import ConfigError
    from gateway.fastapi_support import flask_session, require_roles
    from gateway.settings import Settings, load_settings

    __version__: str

__all__ = [
    "ConfigError",
    "GatewayApp",
    "Identity",
    "RequestFacts",
    "Settings",
    "__version__",
    "create_app",
    "fastapi_support",
    "flask_session",
    "flask_support",
    "load_settings",
    "require_roles",
]

#: Where each public name lives; imported on first access, by ``__getattr__``.
_LOCATIONS = {
    "ConfigError": "gateway.errors",
    "GatewayApp": "gateway.app",
    "Identity": "gateway.context",
    "RequestFacts": "gateway.context",
    "Settings": "gateway.settings",
    "create_app": "gateway.app",
    "flask_session": "gateway.fastapi_support",
    "load_settings": "gateway.settings",
    "require_roles": "gateway.fastapi_support",
}
_SUBMODULES = ("fastapi_support", "flask_support")
_DISTRIBUTION = "flask-fastapi-gateway"


if not TYPE_CHECKING:  # hidden from type checkers, which would accept any name (typos too)

    def __getattr__(name: str) -> Any:
        if name == "__version__":
            value = _installed_version()
        elif name in _LOCATIONS:
            value = getattr(importlib.import_module(_LOCATIONS[name]), name)
        elif name in _SUBMODULES:
            value = importlib.import_module(f"{__name__}.{name}")
        else:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        globals()[name] = value  # the next access skips this function
        return value


def __dir__() -> list[str]:
    # The public names and the module's own dunders; not the helpers this file imports.
    dunders = (name for name in globals() if name.startswith("__") and name.endswith("__"))
    return sorted({*__all__, *dunders})


def _installed_version() -> str:
    # From the distribution's metadata, so it is always pyproject.toml's version; a checkout
    # that was never installed has no metadata.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(_DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"
