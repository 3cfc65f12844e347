"""How a caller authenticates, in the merged document: the gateway's credentials as security
schemes, and each operation's access policy as its security requirement.

The gateway, not the side that answers, checks credentials and access policies, so these come
from ``[auth]``: a public route needs nothing (``security: []``), any other accepts any of the
configured credentials (a JWT bearer token, the API-key header, the legacy app's session
cookie), so Swagger UI's "Authorize" works for both sides::

    schemes = security_schemes(settings.auth, session_cookie="session")
    requirement(policies.lookup("GET", "/api/me"), schemes)   # [{"gateway_bearer": []}, ...]
"""

from __future__ import annotations

from typing import Any

from gateway.auth.policy import Policy
from gateway.settings import AuthSettings


def security_schemes(auth: AuthSettings, *, session_cookie: str | None) -> dict[str, Any]:
    """The configured credentials, in ``[auth] order``, as OpenAPI security schemes."""
    schemes: dict[str, Any] = {}
    for method in auth.order:
        if method == "jwt" and auth.jwt is not None:
            schemes["gateway_bearer"] = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        elif method == "api-key" and auth.api_keys is not None:
            schemes["gateway_api_key"] = {
                "type": "apiKey",
                "in": "header",
                "name": auth.api_keys.header,
            }
        elif method == "session" and auth.session is not None and session_cookie is not None:
            schemes["gateway_session"] = {"type": "apiKey", "in": "cookie", "name": session_cookie}
    return schemes


def requirement(policy: Policy, schemes: dict[str, Any]) -> list[dict[str, list[str]]]:
    """Any one of the schemes, or none for a public route. Roles are not OpenAPI scopes: the
    roles a route needs are in ``x-gateway.access``."""
    if policy.access == "public":
        return []
    return [{name: []} for name in schemes]
