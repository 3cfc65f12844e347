"""Static API keys in a request header, configured as SHA-256 hashes so no key sits in config.

::

    hash_api_key("k3y-from-the-vault")    # -> the hex digest to put in [[auth.api_keys.keys]]
    backend = APIKeyBackend({hash_api_key("k3y-from-the-vault"): ("reporting-job", frozenset())})
    identity = await backend.authenticate(Headers({"x-api-key": "k3y-from-the-vault"}))
    identity.subject                       # the key's configured name, e.g. "reporting-job"

Security caveats, bluntly: an API key is a bearer password that never expires. Anyone who sees
one (a log line, a shell history, a proxy) is that client until the key is removed from config
and the gateway restarted. Keys must be long and random (32+ bytes from a CSPRNG): a plain
SHA-256 is only safe to publish in config because such keys cannot be guessed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from starlette.datastructures import Headers

from gateway.auth import RawHeaders
from gateway.context import Identity
from gateway.errors import InvalidCredentials


def hash_api_key(key: str) -> str:
    """The hex SHA-256 the config stores for ``key`` (hashed as the UTF-8 a client sends)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class APIKeyBackend:
    """One header (``X-API-Key`` by default): absent ``None``, a known key ``Identity``."""

    name = "api-key"

    def __init__(
        self, keys: Mapping[str, tuple[str, frozenset[str]]], *, header: str = "X-API-Key"
    ) -> None:
        #: Hex SHA-256 of a key -> (its name, its roles).
        self._keys = dict(keys)
        self._header = header
        self._raw_header = header.lower().encode("latin-1")
        self.credential_headers = frozenset({self._raw_header})

    def without_credential(self, headers: RawHeaders) -> RawHeaders:
        return [(name, value) for name, value in headers if name != self._raw_header]

    async def authenticate(self, headers: Headers) -> Identity | None:
        values = headers.getlist(self._header)
        if not values:
            return None
        if len(values) > 1:
            # Which one would count? Refuse rather than let two parsers pick differently.
            raise InvalidCredentials(f"more than one {self._header} header")
        if not values[0]:
            raise InvalidCredentials("empty API key")
        # Starlette decodes header bytes as latin-1, so this re-creates exactly the bytes the
        # client sent (UTF-8 for a non-ASCII key, matching hash_api_key). A dict lookup on the
        # digest leaks no usable timing: an attacker cannot steer a SHA-256 digest's prefix.
        digest = hashlib.sha256(values[0].encode("latin-1")).hexdigest()
        found = self._keys.get(digest)
        if found is None:
            raise InvalidCredentials("unknown API key")
        name, roles = found
        return Identity(subject=name, roles=roles, method=self.name)
