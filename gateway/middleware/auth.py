"""Authenticate once, enforce the route's access policy, for both sides, before any body is read.

Checked last of the request checks (``gateway.middleware.checks``), after the request context
(it needs the canonical path) and before dispatch::

    auth = Authenticator(backends=[jwt, session], policies=policies, strip_headers=["x-user-id"])
    AuthMiddleware(dispatcher, backends=[jwt, session], policies=policies)  # as ASGI middleware

For each request it

1. removes headers a client must never send (configured identity headers such as
   ``X-User-Id``), and refuses a request with two ``Authorization`` headers (400): two parsers
   could each pick a different one;
2. asks every backend, in the configured order of precedence (none, when the request has no
   header any backend reads: it is anonymous). A credential that is present but
   invalid (tampered cookie, expired or forged token) makes the request anonymous, is logged, and
   is removed from the request, so neither backend can accept what the gateway refused;
   when two valid credentials name different users, the first backend's user wins and both
   sides see that one user. A backend that fails (a bug, a broken key) fails closed: 503, never
   forwarded;
3. records the identity in the request facts (both backends read it from there);
4. applies the access policy matched on the canonical path: 401 with ``WWW-Authenticate`` for
   no valid identity, 403 for a known identity without the role, both JSON with the request id.
   ``/_gateway/health`` and ``/_gateway/ready`` are always public, for probes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import structlog
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Scope

from gateway.auth import AuthBackend
from gateway.auth.policy import PolicyTable, authorize
from gateway.context import ANONYMOUS, Identity, RequestFacts
from gateway.errors import InvalidCredentials, Refusal
from gateway.middleware.checks import RequestChecksMiddleware
from gateway.middleware.header_scan import HeaderScan

_PROBES = frozenset({"/_gateway/health", "/_gateway/ready"})
_TWO_AUTHORIZATIONS = Refusal(400, "more than one Authorization header")
_UNAVAILABLE = Refusal(503, "authentication is unavailable")

log = structlog.get_logger("gateway.auth")


class Authenticator:
    """The steps above, each its own call, in the order ``gateway.middleware.checks`` runs them:
    ``screen`` (headers), ``identify`` (the backends, only when ``screen`` says they must be
    asked), ``admit`` (the access policy)."""

    def __init__(
        self,
        *,
        backends: Sequence[AuthBackend],
        policies: PolicyTable,
        strip_headers: Iterable[str] = (),
        realm: str = "gateway",
    ) -> None:
        self._backends = tuple(backends)
        self._credential_headers = frozenset().union(
            *(backend.credential_headers for backend in self._backends)
        )
        self._policies = policies
        self._strip = frozenset(name.lower().encode("latin-1") for name in strip_headers)
        self._challenge = f'Bearer realm="{realm}"'.encode("latin-1")
        self._log = log.bind()

    @property
    def credential_headers(self) -> frozenset[bytes]:
        """The headers some backend reads: a request without any is anonymous, unasked."""
        return self._credential_headers

    @property
    def strip_headers(self) -> frozenset[bytes]:
        """The identity headers no client may send (``auth.strip_headers``), lower-cased."""
        return self._strip

    def screen(self, scope: Scope, facts: RequestFacts, headers: HeaderScan) -> Refusal | bool:
        """Strip forged identity headers; a 400 refusal for two ``Authorization`` headers, else
        whether ``identify`` must ask the backends: not when the request has no header any
        backend reads (anonymous, the common case for public endpoints and probes), except on
        a traced request, which still shows its auth span. ``headers``: the request's scan."""
        if headers.strip:
            strip = self._strip
            kept: list[tuple[bytes, bytes]] = scope["headers"]
            removed = sorted({name.decode("latin-1") for name, _ in kept if name in strip})
            if removed:
                # Bluntly: a client-sent identity header is an attack or a misconfigured proxy.
                self._log.warning("auth.identity_headers_removed", headers=removed)
                scope["headers"] = [(name, value) for name, value in kept if name not in strip]
        if headers.authorizations > 1:
            return _TWO_AUTHORIZATIONS
        return bool(self._backends) and (headers.credential or facts.spans is not None)

    async def identify(self, scope: Scope, facts: RequestFacts) -> list[AuthBackend] | Refusal:
        """Ask the backends; record the identity in ``facts``. The backends whose credential
        was invalid (now removed from the request), or a 503 refusal when a backend failed."""
        kept: list[tuple[bytes, bytes]] = scope["headers"]
        spans = facts.spans
        try:
            authenticating = self._authenticate(Headers(raw=kept))
            identity, invalid = await (
                authenticating if spans is None else spans.auth(authenticating)
            )
        except Exception:
            self._log.exception("auth.backend_failed", path=facts.path)
            return _UNAVAILABLE
        facts.identity = identity
        if invalid:
            # A refused credential goes no further: a backend that checks credentials itself
            # (the legacy app verifying its own tokens, without the gateway's audience or key
            # rules) must not accept what the gateway refused.
            for backend in invalid:
                kept = backend.without_credential(kept)
            scope["headers"] = kept
        return invalid

    def admit(self, facts: RequestFacts, invalid: Sequence[AuthBackend]) -> Refusal | None:
        """The route's access policy for ``facts.identity``: ``None`` to go on, or the 401
        (with its challenge) or 403 refusal."""
        if facts.path in _PROBES:
            return None
        policy = self._policies.lookup(facts.method, facts.path)
        decision = authorize(policy, facts.identity)
        if decision.status == 200:
            return None
        headers: tuple[tuple[bytes, bytes], ...] = ()
        if decision.status == 401:
            challenge = self._challenge
            if invalid:
                facts.invalid_credentials = tuple(backend.name for backend in invalid)
                challenge += b', error="invalid_token"'
            headers = ((b"www-authenticate", challenge),)
        return Refusal(decision.status, decision.reason, headers, denied=True)

    async def _authenticate(self, headers: Headers) -> tuple[Identity, list[AuthBackend]]:
        """The winning identity (or anonymous) and the backends whose credential was invalid."""
        found: list[Identity] = []
        invalid: list[AuthBackend] = []
        for backend in self._backends:
            try:
                identity = await backend.authenticate(headers)
            except InvalidCredentials as exc:
                invalid.append(backend)
                self._log.info("auth.invalid_credentials", method=backend.name, reason=exc.reason)
                continue
            if identity is not None:
                found.append(identity)
        if not found:
            return ANONYMOUS, invalid
        winner = found[0]
        others = {identity.subject for identity in found[1:]} - {winner.subject}
        if others:
            self._log.info(
                "auth.conflicting_identities",
                chosen=winner.method,
                ignored=[identity.method for identity in found[1:]],
            )
        return winner, invalid


class AuthMiddleware(RequestChecksMiddleware):
    """``Authenticator`` alone, as ASGI middleware (the gateway runs it with the other checks,
    in one layer: ``gateway.middleware.checks``)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        backends: Sequence[AuthBackend],
        policies: PolicyTable,
        strip_headers: Iterable[str] = (),
        realm: str = "gateway",
    ) -> None:
        auth = Authenticator(
            backends=backends, policies=policies, strip_headers=strip_headers, realm=realm
        )
        super().__init__(app, auth=auth)
