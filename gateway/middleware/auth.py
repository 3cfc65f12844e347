"""Authenticate once, enforce the route's access policy, for both sides, before any body is read.

Runs after the request-context middleware (it needs the canonical path) and before dispatch::

    AuthMiddleware(dispatcher, backends=[jwt, session], policies=policies,
                   strip_headers=["x-user-id"])

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
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.auth import AuthBackend
from gateway.auth.policy import PolicyTable, authorize
from gateway.context import ANONYMOUS, Identity, request_facts
from gateway.errors import InvalidCredentials, refuse

_PROBES = frozenset({"/_gateway/health", "/_gateway/ready"})

log = structlog.get_logger("gateway.auth")


class AuthMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        backends: Sequence[AuthBackend],
        policies: PolicyTable,
        strip_headers: Iterable[str] = (),
        realm: str = "gateway",
    ) -> None:
        self.app = app
        self._backends = tuple(backends)
        self._credential_headers = frozenset().union(
            *(backend.credential_headers for backend in self._backends)
        )
        self._policies = policies
        self._strip = frozenset(name.lower().encode("latin-1") for name in strip_headers)
        self._challenge = f'Bearer realm="{realm}"'.encode("latin-1")
        self._log = log.bind()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        facts = request_facts(scope)

        authorization_count = 0
        has_credential = False
        credential_headers, strip = self._credential_headers, self._strip
        kept: list[tuple[bytes, bytes]] = scope["headers"]
        stripped = False
        for name, _ in kept:
            if name in strip:
                stripped = True
                continue
            if name == b"authorization":
                authorization_count += 1
            if name in credential_headers:
                has_credential = True
        if stripped:
            # Bluntly: a client-sent identity header is an attack or a misconfigured proxy.
            removed = sorted({name.decode("latin-1") for name, _ in kept if name in strip})
            self._log.warning("auth.identity_headers_removed", headers=removed)
            kept = [(name, value) for name, value in kept if name not in strip]
            scope["headers"] = kept
        if authorization_count > 1:
            await refuse(scope, send, 400, "more than one Authorization header")
            return

        spans = facts.spans
        try:
            # No header any backend reads: anonymous, without asking each of them (the common
            # case for public endpoints and probes). Traced requests still show their auth span.
            if self._backends and (has_credential or spans is not None):
                authenticating = self._authenticate(Headers(raw=kept))
                identity, invalid = await (
                    authenticating if spans is None else spans.auth(authenticating)
                )
            else:
                identity, invalid = ANONYMOUS, []
        except Exception:
            self._log.exception("auth.backend_failed", path=facts.path)
            await refuse(scope, send, 503, "authentication is unavailable")
            return
        facts.identity = identity
        if invalid:
            # A refused credential goes no further: a backend that checks credentials itself
            # (the legacy app verifying its own tokens, without the gateway's audience or key
            # rules) must not accept what the gateway refused.
            for backend in invalid:
                kept = backend.without_credential(kept)
            scope["headers"] = kept

        if facts.path in _PROBES:
            await self.app(scope, receive, send)
            return
        policy = self._policies.lookup(facts.method, facts.path)
        decision = authorize(policy, identity)
        if decision.status == 200:
            await self.app(scope, receive, send)
            return
        headers = []
        if decision.status == 401:
            challenge = self._challenge
            if invalid:
                facts.invalid_credentials = tuple(backend.name for backend in invalid)
                challenge += b', error="invalid_token"'
            headers.append((b"www-authenticate", challenge))
        await refuse(scope, send, decision.status, decision.reason, headers, denied=True)

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
