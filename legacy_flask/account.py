"""``GET /api/me``: who the handler thinks the caller is, and how it knows.

Behind the gateway this shows the identity the gateway verified; on its own, the Flask session or
the bearer token. The ``accounts`` service answers the same route with the same JSON.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, session

from legacy_flask.auth import current_user, login_required

bp = Blueprint("account", __name__)


@bp.get("/api/me")
@login_required
def me() -> dict[str, Any]:
    return {
        "username": current_user.username,
        "roles": sorted(current_user.roles),
        "auth_method": current_user.auth_method,
    }


@bp.get("/api/preferences")
@login_required
def preferences() -> dict[str, Any]:
    # Written by the accounts service (PUT /api/preferences) into this app's own session cookie.
    return {"theme": session.get("theme")}
