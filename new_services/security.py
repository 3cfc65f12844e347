"""Who the caller is, as the gateway verified it.

Services never parse credentials themselves: the gateway authenticates each request once and
puts the identity in the ASGI scope. Outside the gateway every caller is anonymous::

    @router.get("/api/me")
    def me(identity: AuthenticatedIdentity) -> Me: ...
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from gateway.context import Identity
from gateway.fastapi_support import current_identity


async def require_identity(request: Request) -> Identity:
    """The caller's identity; 401, as the legacy app answers it, when there is none."""
    identity = current_identity(request)
    if not identity.is_authenticated:
        raise HTTPException(
            status_code=401,
            detail="authentication required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return identity


AuthenticatedIdentity = Annotated[Identity, Depends(require_identity)]
