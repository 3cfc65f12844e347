"""One OpenAPI document for the whole application, and Swagger UI to read it (admins only).

``GET /_gateway/openapi/app.json`` lists every service route (from the services' own schemas)
and every legacy rule (from the Flask ``url_map``), each once, with who serves it today in an
``x-gateway`` extension; ``GET /_gateway/docs`` shows it in Swagger UI, its assets served from
the package. The parts:

- ``legacy``: Flask rules as operations (typed path parameters, docstrings, inferred responses);
- ``components``: the services' components merged, renamed ``{service}__{name}`` on a clash;
- ``extension``: the ``x-gateway`` extension, from the route plan and the flag snapshot;
- ``security``: the gateway's credentials as security schemes, access policies as requirements;
- ``document``: the assembly, built once and kept, ``x-gateway`` filled per request;
- ``docs``: the routes, mounted into the admin app (``AdminApp(..., routers=[...])``)::

    router = app_docs(settings, flask_app, service_apps, table, flags, policies)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter

from gateway.auth.policy import PolicyTable
from gateway.flags.runtime import FlagRuntime
from gateway.openapi.docs import docs_router
from gateway.openapi.document import AppDocument
from gateway.openapi.extension import retired_routes
from gateway.openapi.security import security_schemes
from gateway.route_plan import RoutePlan
from gateway.routes import RouteTable
from gateway.settings import Settings

__all__ = ["AppDocument", "app_docs"]


def app_docs(
    settings: Settings,
    wsgi_app: Any,
    services: Mapping[str, Any],
    table: RouteTable[RoutePlan],
    flags: FlagRuntime,
    policies: PolicyTable | None = None,
) -> APIRouter:
    """The routes of the merged document and its docs, for the configured application.
    Nothing is built until the first request asks for the document."""
    document = AppDocument(
        wsgi_app=wsgi_app,
        services=services,
        table=table,
        flags=flags,
        samples_dir=settings.record.dir,
        retired=retired_routes(settings.routes),
        policies=policies,
        security_schemes=security_schemes(settings.auth, session_cookie=_session_cookie(wsgi_app)),
    )
    return docs_router(document)


def _session_cookie(wsgi_app: Any) -> str:
    """The legacy Flask app's session cookie name (Flask's default for other apps)."""
    config = getattr(wsgi_app, "config", None)
    name = config.get("SESSION_COOKIE_NAME") if isinstance(config, dict) else None
    return name if isinstance(name, str) else "session"
