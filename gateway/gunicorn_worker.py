"""A gunicorn worker that serves the gateway the way ``gateway serve`` does.

::

    pip install 'flask-fastapi-gateway[gunicorn]'
    export GATEWAY_CONFIG=gateway.toml
    gunicorn -k gateway.gunicorn_worker.GatewayWorker -w 4 gateway.asgi:app

What it changes in uvicorn-worker's ``UvicornWorker``, each one something ``gateway serve`` does:

- **uvicorn's proxy-header handling is off.** It believes ``X-Forwarded-For`` from gunicorn's
  ``--forwarded-allow-ips`` (127.0.0.1 by default) and rewrites the client address before the
  gateway can tell who sent the request; ``server.trusted_proxies`` decides that, in the gateway
  (``gateway.middleware.request_head``), under every server alike.
- **The gateway's HTTP protocol** (``gateway.http_protocol``), with ``limits.max_head_size`` and
  ``limits.head_timeout``, in place of uvicorn's plain httptools protocol.
- **The lifespan is on**, so each service's start-up runs (and a failure stops the worker).

The config comes from ``GATEWAY_CONFIG`` and ``GATEWAY_*``, as ``gateway.asgi`` reads it.
"""

from __future__ import annotations

import os
from typing import Any

from uvicorn_worker import UvicornWorker

from gateway.http_protocol import HttpProtocolFactory
from gateway.settings import load_settings


class GatewayWorker(UvicornWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # What UvicornWorker.__init__ passes to uvicorn's Config, with the gateway's choices.
        self.CONFIG_KWARGS = {
            **UvicornWorker.CONFIG_KWARGS,
            "proxy_headers": False,
            "lifespan": "on",
        }
        super().__init__(*args, **kwargs)
        limits = load_settings(None, os.environ).limits
        # Read when uvicorn loads its config, in the worker: a protocol class (here a picklable
        # factory) is used as it is.
        self.config.http = HttpProtocolFactory(
            max_head_size=limits.max_head_size, head_timeout=limits.head_timeout
        ).as_uvicorn_http()
