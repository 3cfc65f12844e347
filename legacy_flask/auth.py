"""Logging in, bearer tokens, and who the current user is.

Views protect themselves the Flask-Login way::

    @bp.get("/api/me")
    @login_required
    def me():
        return {"username": current_user.username}

``current_user`` is resolved once per request, first match wins:

1. the identity the gateway verified, when the request came through the gateway with one;
2. the ``user`` stored in the Flask session by ``POST /login``;
3. an ``Authorization: Bearer`` JWT from ``POST /api/token``.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

import structlog
from flask import Blueprint, abort, current_app, g, request, session
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, Unauthorized
from werkzeug.local import LocalProxy
from werkzeug.security import check_password_hash, generate_password_hash

from gateway.flask_support import current_facts
from legacy_flask.db import get_db
from legacy_flask.tokens import decode_token, issue_token

bp = Blueprint("auth", __name__)
log = structlog.get_logger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class User:
    username: str | None
    roles: frozenset[str] = frozenset()
    #: ``"session"``, ``"jwt"``, or the gateway's method (``"api-key"``...); ``"anonymous"``.
    auth_method: str = "anonymous"

    @property
    def is_authenticated(self) -> bool:
        return self.username is not None


ANONYMOUS_USER = User(username=None)


def _load_current_user() -> User:
    if "current_user" not in g:
        g.current_user = _resolve_user()
    return cast(User, g.current_user)


current_user = cast(User, LocalProxy(_load_current_user))


def _resolve_user() -> User:
    facts = current_facts()
    if facts is not None and facts.identity.is_authenticated:
        identity = facts.identity
        return User(identity.subject, identity.roles, identity.method)

    username = session.get("user")
    if isinstance(username, str):
        row = _find_user(username)
        if row is not None:
            # Roles come from the database, not the cookie, so revoking a role takes effect on
            # the user's next request.
            return User(row["username"], parse_roles(row["roles"]), "session")

    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        claims = decode_token(token.strip(), current_app.config["JWT_SECRET"])
        if claims is not None:
            return User(claims.subject, claims.roles, "jwt")

    return ANONYMOUS_USER


def login_required(view: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(view)
    def wrapped_view(*args: P.args, **kwargs: P.kwargs) -> R:
        if not current_user.is_authenticated:
            raise Unauthorized(
                "authentication required", www_authenticate=WWWAuthenticate("bearer")
            )
        return view(*args, **kwargs)

    return wrapped_view


def roles_required(*roles: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Like :func:`login_required`, and the user must also hold every one of ``roles``."""
    required = frozenset(roles)

    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        @login_required
        @functools.wraps(view)
        def wrapped_view(*args: P.args, **kwargs: P.kwargs) -> R:
            missing = required - current_user.roles
            if missing:
                raise Forbidden(f"missing required role: {', '.join(sorted(missing))}")
            return view(*args, **kwargs)

        return wrapped_view

    return decorator


def roles_for(username: str) -> frozenset[str] | None:
    """The roles of a user, or ``None`` when there is no such user (any more).

    The gateway's session backend calls this (inside this app's app context) to learn the roles
    of a session's user: the cookie holds only the name.
    """
    row = _find_user(username)
    return parse_roles(row["roles"]) if row is not None else None


def parse_roles(text: str) -> frozenset[str]:
    return frozenset(role.strip() for role in text.split(",") if role.strip())


def _find_user(username: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = (
        get_db()
        .execute("SELECT username, password_hash, roles FROM users WHERE username = ?", (username,))
        .fetchone()
    )
    return row


@functools.cache
def _dummy_password_hash() -> str:
    return generate_password_hash("not-a-real-password")


def _json_object() -> Mapping[str, Any]:
    payload = request.get_json(silent=True)
    return payload if isinstance(payload, dict) else {}


def _check_credentials(credentials: Mapping[str, Any]) -> tuple[str, frozenset[str]]:
    """The username and roles these credentials prove; aborts 400 if missing, 401 if wrong."""
    username = credentials.get("username")
    password = credentials.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        abort(400, "username and password are required")
    row = _find_user(username)
    # Hash even for an unknown user, so the response time does not tell which names exist.
    password_hash = row["password_hash"] if row is not None else _dummy_password_hash()
    password_ok = check_password_hash(password_hash, password)
    if row is None or not password_ok:
        log.info("auth.login_failed", username=username)
        abort(401, "invalid username or password")
    return row["username"], parse_roles(row["roles"])


@bp.post("/login")
def login() -> dict[str, Any]:
    """Start a session from form fields (the HTML page) or a JSON body (scripts)."""
    credentials = _json_object() if request.is_json else request.form
    username, roles = _check_credentials(credentials)
    # A fresh session on every login, so nothing set before it survives (session fixation).
    session.clear()
    session["user"] = username
    log.info("auth.logged_in", username=username)
    return {"username": username, "roles": sorted(roles)}


@bp.post("/logout")
def logout() -> tuple[str, int]:
    session.clear()
    return "", 204


@bp.post("/api/token")
def token() -> dict[str, str]:
    username, roles = _check_credentials(_json_object())
    access_token = issue_token(username, roles, current_app.config["JWT_SECRET"])
    log.info("auth.token_issued", username=username)
    return {"access_token": access_token, "token_type": "bearer"}
