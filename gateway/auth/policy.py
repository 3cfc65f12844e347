"""Route access policies: who may call a (method, canonical path), decided the same way whichever
side serves it.

A policy is ``public``, ``authenticated``, or a set of roles (any one of them grants access).
Policies are matched with the route table's trie and its precedence (static beats parameters);
paths no policy names get the configured default (200 allowed, 401 no valid identity, 403 an
identity without the role):

    >>> policies = build_policies(
    ...     [("/api/books/{book_id:int}", ["PUT"], None, ["admin"])], default_access="public"
    ... )
    >>> bob = Identity("bob", frozenset({"user"}), "jwt")
    >>> authorize(policies.lookup("PUT", "/api/books/7"), bob)
    AccessDecision(status=403, reason='missing required role: admin')
    >>> authorize(policies.lookup("GET", "/api/books/7"), bob).status
    200
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from gateway.context import Identity
from gateway.routes import RouteTable

Access = Literal["public", "authenticated", "roles"]


@dataclass(frozen=True, slots=True)
class Policy:
    template: str
    methods: frozenset[str]
    access: Access
    roles: frozenset[str] = frozenset()

    def describe(self) -> str:
        return "roles: " + ", ".join(sorted(self.roles)) if self.access == "roles" else self.access


@dataclass(frozen=True, slots=True)
class AccessDecision:
    status: Literal[200, 401, 403]
    reason: str


class PolicyTable:
    def __init__(self, policies: Iterable[Policy], default: Policy) -> None:
        self._table: RouteTable[Policy] = RouteTable(policies)
        self.default = default
        self.policies = self._table.routes

    def lookup(self, method: str, path: str) -> Policy:
        match = self._table.match(method, path)
        return match.route if match is not None else self.default


def build_policies(
    entries: Iterable[tuple[str, Iterable[str], str | None, Iterable[str]]],
    default_access: Literal["public", "authenticated"],
) -> PolicyTable:
    """From (path, methods, access, roles) tuples; raises ``routes.DuplicateRouteError`` when two
    policies claim the same method and path."""
    policies = []
    for path, methods, access, roles in entries:
        role_set = frozenset(roles)
        kind: Access
        if role_set:
            kind = "roles"
        elif access == "public":
            kind = "public"
        else:
            kind = "authenticated"
        policies.append(Policy(path, frozenset(methods), kind, role_set))
    return PolicyTable(policies, Policy("*", frozenset(), default_access))


def requiring(roles: Iterable[str]) -> Policy:
    """A policy for code that checks roles itself: any one of ``roles``, or just a signed-in
    caller when none are given."""
    wanted = frozenset(roles)
    return Policy("*", frozenset(), "roles" if wanted else "authenticated", wanted)


_PUBLIC = AccessDecision(200, "public")
_UNAUTHENTICATED = AccessDecision(401, "authentication required")


def authorize(policy: Policy, identity: Identity) -> AccessDecision:
    """Pure: may this identity call a route under this policy?"""
    if policy.access == "public":
        return _PUBLIC
    if not identity.is_authenticated:
        return _UNAUTHENTICATED
    if policy.access == "authenticated" or identity.roles & policy.roles:
        return AccessDecision(200, policy.describe())
    return AccessDecision(403, f"missing required role: {', '.join(sorted(policy.roles))}")
