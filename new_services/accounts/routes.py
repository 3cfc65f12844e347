"""``GET /api/me``: the identity the gateway verified, in the legacy app's JSON."""

from __future__ import annotations

import structlog
from fastapi import APIRouter
from pydantic import BaseModel

from new_services.security import AuthenticatedIdentity

router = APIRouter()
log = structlog.get_logger(__name__)


class Me(BaseModel):
    username: str
    roles: list[str]
    #: How the gateway authenticated the caller: ``"session"``, ``"jwt"`` or ``"api-key"``.
    auth_method: str


@router.get("/api/me")
async def me(identity: AuthenticatedIdentity) -> Me:
    # async: nothing here blocks, so there is no reason to take a thread-pool slot.
    assert identity.subject is not None  # AuthenticatedIdentity guarantees it
    log.info("accounts.me", username=identity.subject)
    return Me(username=identity.subject, roles=sorted(identity.roles), auth_method=identity.method)
