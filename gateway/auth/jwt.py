"""Verify ``Authorization: Bearer`` JWTs against a fixed set of keys loaded at start-up.

::

    backend = JWTBackend(settings.auth.jwt, source="gateway.toml")
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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from jwt.types import Options
from starlette.datastructures import Headers

from gateway.auth import InvalidCredentials
from gateway.context import Identity
from gateway.errors import ConfigError
from gateway.settings import JWTKeySettings, JWTSettings

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
class _Key:
    kid: str
    algorithm: str
    #: HMAC: the secret as bytes. Otherwise a ``cryptography`` public-key object.
    key: Any


class JWTBackend:
    """Bearer JWTs: ``None`` without one, an ``Identity`` for a valid one."""

    name = "jwt"

    def __init__(self, settings: JWTSettings, *, source: str) -> None:
        keys = [_load_key(key, index, source) for index, key in enumerate(settings.keys)]
        self._keys = {key.kid: key for key in keys}
        self._current = keys[0]
        self._audience = settings.audience
        self._issuer = settings.issuer
        self._leeway = settings.leeway
        self._subject_claim = settings.subject_claim
        self._roles_claim = settings.roles_claim
        self._keep_claims = settings.keep_claims
        self._options: Options = {
            "require": ["exp", settings.subject_claim],
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

    def _verify(self, token: str) -> Identity:
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
        return Identity(
            subject=subject,
            roles=self._roles(claims),
            method=self.name,
            claims={name: claims[name] for name in self._keep_claims if name in claims},
        )

    def _roles(self, claims: Mapping[str, Any]) -> frozenset[str]:
        roles = claims.get(self._roles_claim, [])
        if isinstance(roles, str):
            return frozenset((roles,))  # some issuers write a lone role as a plain string
        if isinstance(roles, list) and all(isinstance(role, str) for role in roles):
            return frozenset(roles)
        raise InvalidCredentials(f"claim {self._roles_claim!r} is not a list of strings")


def _reason(exc: jwt.InvalidTokenError) -> str:
    for error_type, reason in _REASONS:
        if isinstance(exc, error_type):
            return reason
    # The class name says which check failed (InvalidSubjectError, ...) and carries no token text.
    return f"invalid token ({type(exc).__name__})"


def _load_key(settings: JWTKeySettings, index: int, source: str) -> _Key:
    """Read and parse one key now, so a bad secret or PEM stops start-up, not a request."""
    prefix = f"auth.jwt.keys[{index}]"
    if settings.key_file is not None:
        where = f"{prefix}.key_file"
        material = _read_key_file(settings.key_file, source, where)
    else:
        where = f"{prefix}.secret_env" if settings.secret_env is not None else f"{prefix}.secret"
        # The model guarantees one source; load_settings has resolved secret_env into secret.
        if settings.secret is None:
            raise ConfigError.at(source, where, "no secret (was secret_env resolved?)")
        material = settings.secret.get_secret_value().encode()

    try:
        algorithm = jwt.get_algorithm_by_name(settings.algorithm)
    except NotImplementedError:
        problem = f"{settings.algorithm} needs the 'cryptography' package, which is not installed"
        raise ConfigError.at(source, f"{prefix}.algorithm", problem) from None

    hmac = settings.algorithm.startswith("HS")
    try:
        key = algorithm.prepare_key(material)
    except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
        # HMAC refuses an empty secret and a public key as a secret (the confusion attack,
        # configured by hand); PyJWT's messages for those name no key material.
        problem = (
            f"not usable as an HMAC secret: {exc}"
            if hmac
            else f"not a PEM public key usable with {settings.algorithm}"
        )
        raise ConfigError.at(source, where, problem) from None
    if not hmac and hasattr(key, "private_bytes"):
        # The gateway only verifies. A private key here can sign tokens for anyone: keep it with
        # the issuer and give the gateway the public half.
        raise ConfigError.at(source, where, "is a private key; give the gateway the public key")

    too_short = algorithm.check_key_length(key)
    if too_short:
        raise ConfigError.at(source, where, too_short)
    return _Key(kid=settings.kid, algorithm=settings.algorithm, key=key)


def _read_key_file(path: Path, source: str, where: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError.at(source, where, f"file not found: {path}") from None
    except OSError as exc:
        raise ConfigError.at(source, where, f"cannot read {path}: {exc.strerror}") from None
    # Secret files usually end with a newline the issuer did not sign with; PEM parsing ignores it.
    return data.removesuffix(b"\n").removesuffix(b"\r")
