"""The gateway with one layer of its request path switched off: what each layer costs.

Used in process by ``overhead_micro.py --ablate`` and over HTTP by ``ablation_bench.py``, so both
breakdowns switch off exactly the same thing::

    app = create_app(settings)
    ablate(app, "auth")            # the request path, without the auth middleware

Each ablation rebuilds the chain of middleware objects (every one holds the next in ``.app``)
with one link left out or changed, and installs it as the app's handler. The result is not a
correct gateway (no auth!): it exists to be timed. ``none`` leaves the app as it is.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp

from gateway.app import GatewayApp
from gateway.dispatch import Dispatcher
from gateway.middleware.checks import RequestChecksMiddleware
from gateway.middleware.request_context import RequestContextMiddleware


def _changed(cls: type, **changes: Any) -> Callable[[list[Any]], list[Any]]:
    """The ``cls`` link with some attributes changed (the access log, the observers, one of
    the request checks left out)."""

    def change(chain: list[Any]) -> list[Any]:
        changed = []
        for link in chain:
            if isinstance(link, cls):
                link = copy.copy(link)
                for name, value in changes.items():
                    setattr(link, name, value)
            changed.append(link)
        return changed

    return change


#: Layer name -> how the chain changes. The dispatcher's and the services' own costs are what is
#: left with everything off (compare with the service called directly).
ABLATIONS: dict[str, Callable[[list[Any]], list[Any]]] = {
    "none": lambda chain: chain,
    "access-line": _changed(RequestContextMiddleware, _access=None),
    "observers": _changed(RequestContextMiddleware, _observers=()),
    "request-head": _changed(RequestChecksMiddleware, head=None),
    "limits": _changed(RequestChecksMiddleware, limits=None),
    "auth": _changed(RequestChecksMiddleware, auth=None),
    "recording-hook": _changed(Dispatcher, _recording=None),
}


def chain_of(handler: ASGIApp) -> list[Any]:
    """The middleware objects from ``handler`` inwards; the last one is the dispatcher."""
    chain = [handler]
    while hasattr(chain[-1], "app"):
        chain.append(chain[-1].app)
    return chain


def ablated_handler(app: GatewayApp, layer: str) -> ASGIApp:
    """``app``'s request path without ``layer`` (a key of ``ABLATIONS``); ``app`` is unchanged."""
    *middleware, dispatcher = ABLATIONS[layer](chain_of(app.path.handler))
    inner: Any = dispatcher
    for link in reversed(middleware):
        link = copy.copy(link)
        link.app = inner
        inner = link
    return inner


def ablate(app: GatewayApp, layer: str) -> GatewayApp:
    """Serve ``app``'s requests without ``layer``."""
    # The one reference a request reads (GatewayApp.swap); a bench-only shortcut.
    app._handler = ablated_handler(app, layer)
    return app
