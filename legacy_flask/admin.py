"""Administration pages, for users with the ``admin`` role."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from legacy_flask.auth import parse_roles, roles_required
from legacy_flask.db import get_db

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/users")
@roles_required("admin")
def list_users() -> dict[str, Any]:
    # Never select password_hash here: what is not fetched cannot leak into the response.
    rows = get_db().execute("SELECT username, roles FROM users ORDER BY username").fetchall()
    users = [
        {"username": row["username"], "roles": sorted(parse_roles(row["roles"]))} for row in rows
    ]
    return {"users": users}
