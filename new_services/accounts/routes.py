"""``GET /api/me``: the identity the gateway verified, in the legacy app's JSON."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends
from pydantic import BaseModel

from gateway.fastapi_support import flask_session
from new_services.security import AuthenticatedIdentity

router = APIRouter()
log = structlog.get_logger(__name__)


class Me(BaseModel):
    username: str
    roles: list[str]
    #: How the gateway authenticated the caller: ``"session"``, ``"jwt"`` or ``"api-key"``.
    auth_method: str
    #: New in the accounts service (the legacy handler has no such field): the one deliberate
    #: difference the demo's shadow report shows at ``/display_name``.
    display_name: str


@router.get("/api/me")
async def me(identity: AuthenticatedIdentity) -> Me:
    # async: nothing here blocks, so there is no reason to take a thread-pool slot.
    assert identity.subject is not None  # AuthenticatedIdentity guarantees it
    log.info("accounts.me", username=identity.subject)
    return Me(
        username=identity.subject,
        roles=sorted(identity.roles),
        auth_method=identity.method,
        display_name=identity.subject.capitalize(),
    )


class Preferences(BaseModel):
    theme: Literal["light", "dark"]


@router.put("/api/preferences")
async def set_preferences(
    preferences: Preferences,
    identity: AuthenticatedIdentity,
    session: Annotated[MutableMapping[str, Any], Depends(flask_session)],
) -> Preferences:
    # New-only route: it writes into the legacy Flask session, and Flask's pages read it back.
    session["theme"] = preferences.theme
    log.info("accounts.preferences_saved", username=identity.subject)
    return preferences
