"""Verify ``Authorization: Bearer`` JWTs against a fixed set of keys loaded at start-up.

::

    key = load_key("k1", "HS256", secret, source="gateway.toml", where="auth.jwt.keys[0].secret")
    backend = JWTBackend([key], audience="bookstore")      # gateway.build does this from [auth.jwt]
    identity = await backend.authenticate(Headers({"authorization": "Bearer eyJ..."}))
    identity.subject, identity.roles      # "bob", frozenset({"user"})

Each configured key verifies exactly one algorithm. The token's header is read unverified for
one purpose only, to pick the key (``kid``; no ``kid`` means the first, current key), and the
token is then verified with that key's algorithm and nothing else. That is what stops
``alg: none`` tokens and HMAC tokens "signed" with a published RSA public key.

Security caveats, bluntly:

* Anyone who holds an HMAC secret can mint tokens for any user with any role. Every service
  that shares the secret is as trusted as the gateway. Prefer an asymmetric key (RS256, ES256,
  EdDSA) when the issuer is not the legacy app itself.
* A token is valid until its ``exp``: there is no revocation. Keep lifetimes short.
* With no ``audience`` configured, tokens without ``aud`` are accepted and tokens *with* one are
  rejected (RFC 7519 4.1.3: a recipient that is not named must reject). Set ``audience`` when the
  issuer mints tokens for several services, or one service's token opens them all.

A verified token is remembered until its ``exp`` plus the leeway (``gateway.auth.verified``), so
a client that sends the same token on every request pays for one verification, not one per
request (``bench/auth_micro.py`` measures both).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import jwt
from jwt.types import Options
from starlette.datastructures import Headers

from gateway.auth import RawHeaders
from gateway.auth.verified import Verified
from gateway.context import Identity
from gateway.errors import ConfigError, InvalidCredentials

#: Verified tokens a backend remembers at most (a few MiB at this bound).
_VERIFIED_LIMIT = 10_000

# Checked in this order: InvalidSignatureError is a DecodeError, so it comes first. The reasons are
# fixed strings: PyJWT's own messages are safe today, but nothing from the token may be logged.
_REASONS: tuple[tuple[type[jwt.InvalidTokenError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidAlgorithmError, "algorithm not allowed"),
    (jwt.DecodeError, "malformed token"),
)


@dataclass(frozen=True, slots=True)
class JWTKey:
    """One verification key, parsed (``load_key``)."""

    kid: str
    algorithm: str
    #: HMAC: the secret as bytes. Otherwise a ``cryptography`` public-key object.
    key: Any


class JWTBackend:
    """Bearer JWTs: ``None`` without one, an ``Identity`` for a valid one."""

    name = "jwt"
    credential_headers = frozenset({b"authorization"})

    def __init__(
        self,
        keys: Sequence[JWTKey],
        *,
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 30.0,
        subject_claim: str = "sub",
        roles_claim: str = "roles",
        keep_claims: Iterable[str] = (),
    ) -> None:
        if not keys:
            raise ValueError("a JWT backend needs at least one key")
        self._keys = {key.kid: key for key in keys}
        #: A token without ``kid`` is checked against the first key.
        self._current = keys[0]
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway
        self._subject_claim = subject_claim
        self._roles_claim = roles_claim
        self._keep_claims = tuple(keep_claims)
        self._verified = Verified[Identity](limit=_VERIFIED_LIMIT)
        self._options: Options = {
            "require": ["exp", subject_claim],
            # Short keys were refused at start-up; this turns a regression into an error rather
            # than a warning per request.
            "enforce_minimum_key_length": True,
        }

    async def authenticate(self, headers: Headers) -> Identity | None:
        values = headers.getlist("authorization")
        if not values:
            return None
        if len(values) > 1:
            # Two parsers could each pick a different one (the WSGI side joins them).
            raise InvalidCredentials("more than one Authorization header")
        scheme, _, token = values[0].strip().partition(" ")
        if scheme.lower() != "bearer":
            return None  # Basic, Digest, ...: some other backend's (or the app's) business
        token = token.strip()
        if not token:
            raise InvalidCredentials("empty bearer token")
        return self._verify(token)

    def without_credential(self, headers: RawHeaders) -> RawHeaders:
        return [(name, value) for name, value in headers if name != b"authorization"]

    def _verify(self, token: str) -> Identity:
        return _own_copy(self._verified.recall(token, self._verify_now))

    def _verify_now(self, token: str) -> tuple[Identity, float]:
        """The token checked in full: its identity, and the time until which it stays valid
        (PyJWT's test: expired once ``exp <= now - leeway``)."""
        try:
            # Unverified, and used ONLY to choose among keys we already trust.
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise InvalidCredentials("malformed token") from None
        kid = header.get("kid")
        if kid is None:
            key = self._current
        elif kid in self._keys:
            key = self._keys[kid]
        else:
            raise InvalidCredentials("unknown kid")
        if header.get("alg") != key.algorithm:
            raise InvalidCredentials("token algorithm does not match the key's")

        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options=self._options,
            )
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidCredentials(f"missing claim {exc.claim!r}") from None
        except jwt.InvalidAudienceError:
            if self._audience is None:
                raise InvalidCredentials("token names an audience; none is configured") from None
            raise InvalidCredentials("wrong audience") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidCredentials(_reason(exc)) from None

        subject = claims[self._subject_claim]
        if not isinstance(subject, str) or not subject:
            raise InvalidCredentials(f"claim {self._subject_claim!r} is not a non-empty string")
        identity = Identity(
            subject=subject,
            roles=self._roles(claims),
            method=self.name,
            claims={name: claims[name] for name in self._keep_claims if name in claims},
        )
        return identity, float(claims["exp"]) + self._leeway

    def _roles(self, claims: Mapping[str, Any]) -> frozenset[str]:
        roles = claims.get(self._roles_claim, [])
        if isinstance(roles, str):
            return frozenset((roles,))  # some issuers write a lone role as a plain string
        if isinstance(roles, list) and all(isinstance(role, str) for role in roles):
            return frozenset(roles)
        raise InvalidCredentials(f"claim {self._roles_claim!r} is not a list of strings")


def _own_copy(identity: Identity) -> Identity:
    """The remembered identity for one request: its kept claims (a dict) copied, so one
    request's code cannot change what the next request with the same token sees."""
    return replace(identity, claims=dict(identity.claims)) if identity.claims else identity


def _reason(exc: jwt.InvalidTokenError) -> str:
    for error_type, reason in _REASONS:
        if isinstance(exc, error_type):
            return reason
    # The class name says which check failed (InvalidSubjectError, ...) and carries no token text.
    return f"invalid token ({type(exc).__name__})"


def load_key(kid: str, algorithm_name: str, material: bytes, *, source: str, where: str) -> JWTKey:
    """Parse one key now, so a bad secret or PEM stops start-up, not a request; problems are
    ``ConfigError``s naming ``source`` and the config key ``where`` the material came from."""
    algorithm_key = where.rsplit(".", 1)[0] + ".algorithm"
    try:
        algorithm = jwt.get_algorithm_by_name(algorithm_name)
    except NotImplementedError:
        problem = f"{algorithm_name} needs the 'cryptography' package, which is not installed"
        raise ConfigError.at(source, algorithm_key, problem) from None

    hmac = algorithm_name.startswith("HS")
    try:
        key = algorithm.prepare_key(material)
    except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
        # HMAC refuses an empty secret and a public key as a secret (the confusion attack,
        # configured by hand); PyJWT's messages for those name no key material.
        problem = (
            f"not usable as an HMAC secret: {exc}"
            if hmac
            else f"not a PEM public key usable with {algorithm_name}"
        )
        raise ConfigError.at(source, where, problem) from None
    if not hmac and hasattr(key, "private_bytes"):
        # The gateway only verifies. A private key here can sign tokens for anyone: keep it with
        # the issuer and give the gateway the public half.
        raise ConfigError.at(source, where, "is a private key; give the gateway the public key")

    too_short = algorithm.check_key_length(key)
    if too_short:
        raise ConfigError.at(source, where, too_short)
    return JWTKey(kid=kid, algorithm=algorithm_name, key=key)
