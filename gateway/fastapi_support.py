"""Helpers for FastAPI services that run behind the gateway.

::

    from fastapi import Depends
    from gateway.fastapi_support import current_identity

    @router.get("/api/me")
    def me(identity: Identity = Depends(current_identity)) -> dict[str, str | None]:
        return {"subject": identity.subject}
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from starlette.requests import HTTPConnection

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
