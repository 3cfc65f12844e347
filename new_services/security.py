"""Who the caller is, as the gateway verified it.

Services never parse credentials themselves: the gateway authenticates each request once and
puts the identity in the ASGI scope. Outside the gateway every caller is anonymous::

    @router.get("/api/me")
    def me(identity: AuthenticatedIdentity) -> Me: ...
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from gateway.context import Identity
from gateway.fastapi_support import require_roles

#: 401 (``WWW-Authenticate: Bearer``, "authentication required", as the legacy app answers)
#: for an anonymous caller; the service's error handlers give it the legacy JSON shape.
AuthenticatedIdentity = Annotated[Identity, Depends(require_roles())]
