"""Helpers for FastAPI services that run behind the gateway.

::

    from fastapi import Depends
    from gateway.fastapi_support import current_identity, require_roles

    @router.get("/api/me")
    def me(identity: Identity = Depends(current_identity)) -> dict[str, str | None]:
        return {"subject": identity.subject}

    @router.delete("/api/books/{book_id}", dependencies=[Depends(require_roles("admin"))])
    def delete_book(book_id: int) -> None: ...

The gateway already enforces the route's access policy before a service sees the request;
``require_roles`` is for handlers that want the check next to the code as well (and for services
run on their own, where every caller is anonymous).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from gateway.auth.policy import authorize, requiring
from gateway.auth.shared_session import session_from_scope
from gateway.context import ANONYMOUS, Identity, RequestFacts, request_facts


def current_facts(connection: HTTPConnection) -> RequestFacts | None:
    """The gateway's facts for this request, or ``None`` when the service runs on its own."""
    try:
        return request_facts(connection.scope)
    except LookupError:
        return None


def current_identity(connection: HTTPConnection) -> Identity:
    """The identity the gateway verified; anonymous when none (or outside the gateway)."""
    facts = current_facts(connection)
    return facts.identity if facts is not None else ANONYMOUS


def current_request_id(connection: HTTPConnection) -> str | None:
    facts = current_facts(connection)
    return facts.request_id if facts is not None else None


def flask_session(connection: HTTPConnection) -> MutableMapping[str, Any]:
    """The legacy Flask session of this request, read and written as Flask does.

    Changes are sent back as Flask's own signed cookie. Raises ``LookupError`` when the gateway
    has no ``[auth.session]`` or the service runs on its own.
    """
    return session_from_scope(connection.scope)


def require_roles(*roles: str) -> Callable[[HTTPConnection], Identity]:
    """A dependency: the caller's identity, which must hold at least one of ``roles``.

    401 (with ``WWW-Authenticate``) for an anonymous caller, 403 for one without the role; the
    service's own exception handlers shape the body (with
    ``gateway.parity.install_legacy_error_handlers``, the legacy app's handlers do).
    """
    policy = requiring(roles)

    def dependency(connection: HTTPConnection) -> Identity:
        identity = current_identity(connection)
        decision = authorize(policy, identity)
        if decision.status == 401:
            raise HTTPException(401, decision.reason, {"WWW-Authenticate": "Bearer"})
        if decision.status == 403:
            raise HTTPException(403, decision.reason)
        return identity

    return dependency
