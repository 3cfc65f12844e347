"""The gateway as an importable ASGI application, for any ASGI server.

::

    GATEWAY_CONFIG=gateway.toml uvicorn gateway.asgi:app
    GATEWAY_CONFIG=gateway.toml gunicorn -k uvicorn.workers.UvicornWorker gateway.asgi:app
    GATEWAY_CONFIG=gateway.toml hypercorn gateway.asgi:app

The app is built on first access of ``gateway.asgi.app`` (not at import), from the same config
file and ``GATEWAY_*`` variables ``gateway serve`` reads, once per worker process; with
``gunicorn --preload``, once in the master, which then forks the workers. That is safe: each
forked worker reseeds its request ids and restarts its log flusher (``gateway.log_sink``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from gateway.app import GatewayApp, create_app
from gateway.settings import load_settings

_app: GatewayApp | None = None


def create_app_from_environ(environ: Mapping[str, str] | None = None) -> GatewayApp:
    """Build the gateway from ``GATEWAY_CONFIG`` (default ``gateway.toml``) and ``GATEWAY_*``."""
    environ = os.environ if environ is None else environ
    return create_app(load_settings(None, environ))


def __getattr__(name: str) -> GatewayApp:
    global _app
    if name == "app":
        if _app is None:
            _app = create_app_from_environ()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
