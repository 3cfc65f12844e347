"""What the gateway knows about a request, stored once in the ASGI scope.

Every part of the gateway, and both backends, read the same facts through this module, so a key
is spelled in exactly one place::

    facts = request_facts(scope)          # inside ASGI code (middleware, FastAPI dependencies)
    facts = facts_from_environ(environ)   # inside WSGI code (a2wsgi passes the scope along)

The facts object is created by the request-context middleware before anything else runs and is
filled in as the request moves through the gateway: typed fields, one per thing decided (route
match, backend, identity, flag decision, refusals, fallback, shadow copy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from starlette.types import Scope

if TYPE_CHECKING:
    from gateway.flags.model import FlagDecision
    from gateway.tracing import StageSpans

#: The one scope key the gateway owns. Namespaced, like werkzeug's environ keys, so it never
#: clashes with a key a backend framework sets.
FACTS_KEY = "gateway.facts"

#: a2wsgi (and the gateway's legacy adapter) put the ASGI scope in the WSGI environ under this key.
ENVIRON_SCOPE_KEY = "asgi.scope"

#: The backend name of the legacy app: the catch-all, and the other side of every flag.
LEGACY = "legacy"
#: The backend name for answers the gateway gives itself (its own endpoints, refusals).
GATEWAY = "gateway"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the gateway verified the caller to be. ``subject is None`` means anonymous."""

    subject: str | None
    roles: frozenset[str] = frozenset()
    #: ``"anonymous"``, ``"jwt"``, ``"session"`` or ``"api-key"``.
    method: str = "anonymous"
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_authenticated(self) -> bool:
        return self.subject is not None


#: The explicit identity of a request that carried no valid credentials.
ANONYMOUS = Identity(subject=None)


@dataclass(slots=True)
class RequestFacts:
    """The gateway's view of one request: decided once, read everywhere.

    Each stage fills in its own fields; the access line writes every field that is set, in the
    order declared here (``gateway.middleware.request_context``).
    """

    request_id: str
    #: The canonical path: the string the route match, the logs and the backend all use.
    path: str
    method: str
    #: The matched route template (``/api/books/{book_id}``), or ``None`` when nothing matched.
    route: str | None = None
    #: ``LEGACY`` or a service name; ``GATEWAY`` for the gateway's own endpoints and refusals.
    backend: str = LEGACY
    identity: Identity = ANONYMOUS
    #: The status of the response as it reached the server (``None``: none started yet),
    #: recorded by the request-context middleware's one ``send`` wrapper for every layer that
    #: needs it (tracing), so none wraps ``send`` only to read it. Logged as ``status``.
    status: int | None = None
    #: The OpenTelemetry trace the request's server span belongs to (32 hex digits), when
    #: tracing is on.
    trace_id: str | None = None
    #: The stages' span hooks (``gateway.tracing``), when tracing is on; never logged.
    spans: StageSpans | None = None
    #: Why the gateway refused the request itself (a 400, 408, 413 or 431 it answered).
    rejected: str | None = None
    #: Why the access policy refused it (401, 403).
    denied: str | None = None
    #: Auth backends whose credential was present but not valid.
    invalid_credentials: tuple[str, ...] = ()
    #: The route flag's decision, for a flagged route.
    decision: FlagDecision | None = None
    #: The candidate that got a shadow copy (``"candidate"`` on the copy's own facts).
    shadow: str | None = None
    #: The route's circuit breaker, when it kept the request from the new side or let a trial
    #: through.
    breaker: Literal["open", "trial"] | None = None
    #: How the new side failed: ``error``, ``timeout`` or ``status-5xx``.
    failure: str | None = None
    #: The failure legacy answered in the new side's place (a fallback replay).
    fallback: str | None = None
    #: The response was cut off after it started (the server aborted the connection).
    aborted: bool = False
    #: The client went away before the response was whole: before its request body was whole
    #: (whatever status the line shows, the app's answer to a broken body, nobody received it)
    #: or while the response was being sent (``gateway serve`` sees the connection close).
    disconnected: bool = False

    def log_fields(self) -> dict[str, Any]:
        """The optional fields of the access line, in their documented order (only those set)."""
        fields: dict[str, Any] = {}
        if self.trace_id is not None:
            fields["trace_id"] = self.trace_id
        if self.rejected is not None:
            fields["rejected"] = self.rejected
        if self.denied is not None:
            fields["denied"] = self.denied
        if self.invalid_credentials:
            fields["invalid_credentials"] = list(self.invalid_credentials)
        decision = self.decision
        if decision is not None:
            fields["flag"] = decision.flag
            fields["decision"] = decision.side
            fields["reason"] = decision.reason
            if decision.bucket is not None:
                fields["bucket"] = decision.bucket
            if decision.detail is not None:
                fields["provider_reason"] = decision.detail
        if self.shadow is not None:
            fields["shadow"] = self.shadow
        if self.breaker is not None:
            fields["breaker"] = self.breaker
        if self.failure is not None:
            fields["failure"] = self.failure
        if self.fallback is not None:
            fields["fallback"] = self.fallback
        if self.aborted:
            fields["aborted"] = True
        if self.disconnected:
            fields["disconnected"] = True
        return fields


def request_facts(scope: Scope) -> RequestFacts:
    """The facts for this request; raises ``LookupError`` outside the gateway."""
    try:
        facts = scope[FACTS_KEY]
    except KeyError:
        raise LookupError("this request did not pass through the gateway") from None
    if not isinstance(facts, RequestFacts):
        raise LookupError(f"scope[{FACTS_KEY!r}] is not a RequestFacts object")
    return facts


def facts_from_environ(environ: Mapping[str, Any]) -> RequestFacts:
    """The facts for a WSGI request served through the gateway's legacy adapter."""
    scope = environ.get(ENVIRON_SCOPE_KEY)
    if scope is None:
        raise LookupError("this WSGI request did not pass through the gateway")
    return request_facts(scope)
