"""Which Flask app a new service imitates: the legacy app the gateway serves.

The services adapter (``gateway.adapters.services.Service``) binds the configured legacy app
for the duration of each request it hands to a service, in a context variable, so the parity
helpers find it wherever they run (an endpoint, an exception handler, FastAPI's thread pool,
which copies the context)::

    token = bind_legacy_app(flask_app)     # the services adapter does this, per request
    try:
        await service(scope, receive, send)
    finally:
        unbind_legacy_app(token)

    legacy_app()        # flask_app inside; outside the gateway, a Flask app with the defaults

A context variable and not a module global: one process may hold several gateways (tests),
each with its own legacy app.
"""

from __future__ import annotations

import functools
from contextvars import ContextVar, Token

from flask import Flask

_LEGACY: ContextVar[Flask | None] = ContextVar("gateway.parity.legacy", default=None)


def as_legacy_app(app: object) -> Flask | None:
    """``app`` if it is a Flask app; a WSGI app of another kind has nothing to imitate."""
    return app if isinstance(app, Flask) else None


def bind_legacy_app(app: Flask | None) -> Token[Flask | None]:
    """Make ``app`` the legacy app for the code that runs from here in this context."""
    return _LEGACY.set(app)


def unbind_legacy_app(token: Token[Flask | None]) -> None:
    _LEGACY.reset(token)


def bound_app() -> Flask | None:
    """The legacy app the gateway bound for this request; ``None`` outside the gateway."""
    return _LEGACY.get()


def legacy_app() -> Flask:
    """The legacy app to imitate: the bound one, or (outside the gateway) Flask's defaults."""
    return _LEGACY.get() or flask_defaults()


@functools.cache
def flask_defaults() -> Flask:
    """A bare Flask app: Flask's default JSON provider and error pages. Built on first use, not
    at import."""
    return Flask("gateway.parity")
