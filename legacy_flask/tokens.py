"""Bearer tokens for API clients: HS256 JWTs signed with the app's ``JWT_SECRET``.

::

    token = issue_token("bob", {"user"}, secret)
    claims = decode_token(token, secret)   # None when forged, expired or malformed

The gateway verifies the same tokens with the same secret, so both must agree on the algorithm
and the claims: ``sub``, ``roles`` (a list of strings), ``iat`` and ``exp``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

ALGORITHM = "HS256"
TOKEN_LIFETIME = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    roles: frozenset[str]


def issue_token(
    subject: str, roles: Iterable[str], secret: str, *, now: datetime | None = None
) -> str:
    issued_at = now or datetime.now(UTC)
    payload = {
        "sub": subject,
        "roles": sorted(roles),
        "iat": issued_at,
        "exp": issued_at + TOKEN_LIFETIME,
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def decode_token(token: str, secret: str) -> TokenClaims | None:
    """The verified claims, or ``None`` for any token we should not trust."""
    try:
        # One algorithm, fixed here: taking it from the token header is how "alg: none" and
        # HS/RS confusion attacks get in.
        payload = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": ["exp", "iat", "sub"]}
        )
    except jwt.InvalidTokenError:
        return None
    roles = payload.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        return None
    return TokenClaims(subject=payload["sub"], roles=frozenset(roles))
