"""What the gateway knows about a request, stored once in the ASGI scope.

Every part of the gateway, and both backends, read the same facts through this module, so a key
is spelled in exactly one place::

    facts = request_facts(scope)          # inside ASGI code (middleware, FastAPI dependencies)
    facts = facts_from_environ(environ)   # inside WSGI code (a2wsgi passes the scope along)

The facts object is created by the request-context middleware before anything else runs and is
filled in as the request moves through the gateway (route match, backend).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.types import Scope

#: The one scope key the gateway owns. Namespaced, like werkzeug's environ keys, so it never
#: clashes with a key a backend framework sets.
FACTS_KEY = "gateway.facts"

#: a2wsgi (and the gateway's legacy adapter) put the ASGI scope in the WSGI environ under this key.
ENVIRON_SCOPE_KEY = "asgi.scope"


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
    """The gateway's view of one request: decided once, read everywhere."""

    request_id: str
    #: The canonical path: the string the route match, the logs and the backend all use.
    path: str
    method: str
    #: The matched route template (``/api/books/{book_id}``), or ``None`` for the legacy catch-all.
    route: str | None = None
    #: ``"legacy"`` or a service name; ``"gateway"`` for the gateway's own endpoints.
    backend: str = "legacy"
    identity: Identity = ANONYMOUS
    #: Additions from later stages (flag decision, ...), logged on the access line.
    extra: dict[str, Any] = field(default_factory=dict)


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
