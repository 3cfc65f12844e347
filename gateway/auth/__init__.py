"""Authentication at the gateway: verify credentials once, before dispatch, for both sides.

Each backend looks at the request headers for its own kind of credential and answers one of::

    None                  no credential of this kind: let the next backend look
    Identity(...)         a valid credential: who the caller is
    raise InvalidCredentials(reason)    a credential that is present but not valid (401)

Anything else a backend raises (a broken key, a decoder bug) is a backend failure: the gateway
fails closed with a generic 5xx and never forwards the request. Backends never do network I/O on
the event loop; keys are loaded when the backend is built.

    identity = await backend.authenticate(Headers(scope=scope))
    scope["headers"] = backend.without_credential(scope["headers"])   # after InvalidCredentials
"""

from __future__ import annotations

from typing import Protocol

from starlette.datastructures import Headers

from gateway.context import Identity
from gateway.errors import InvalidCredentials

__all__ = ["AuthBackend", "InvalidCredentials", "RawHeaders"]


class AuthBackend(Protocol):
    #: ``"session"``, ``"jwt"`` or ``"api-key"``: also ``Identity.method`` for what it verifies.
    name: str
    #: The request headers (lower-case) its credential travels in. A request with none of them
    #: is anonymous to this backend, and the gateway does not ask it (``gateway.middleware.auth``).
    credential_headers: frozenset[bytes]

    async def authenticate(self, headers: Headers) -> Identity | None: ...

    def without_credential(self, headers: RawHeaders) -> RawHeaders:
        """``headers`` less this backend's credential: a credential the gateway refused must
        reach neither backend (a legacy app that checks it on its own terms, with another key
        or without the audience, would accept what the gateway refused)."""
        ...


RawHeaders = list[tuple[bytes, bytes]]
