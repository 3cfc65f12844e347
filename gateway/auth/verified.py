"""Credentials that passed verification, remembered until they would no longer pass.

Verifying a credential (a JWT's signature and claims, a Flask session cookie's signature) is
most of what authenticating a request costs, and a client sends the same credential on every
request. A backend keeps what one verification found here, under the exact credential string,
until the wall-clock time at which the credential expires; after that it is verified afresh, and
refused with the usual reason. A credential that fails is never remembered, so it is checked in
full every time. The memory is bounded, the oldest entry forgotten first, and belongs to one
backend object (new keys, from a restart or a live reload, start with nothing remembered)::

    verified = Verified[Identity](limit=10_000)
    identity = verified.recall(token, check)   # check(token) -> (identity, valid until)

Only the event loop's thread uses one: no lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Verified(Generic[T]):
    def __init__(self, *, limit: int) -> None:
        self._limit = limit
        #: credential -> (what verifying it found, ``time.time()`` until which it holds).
        self._found: dict[str, tuple[T, float]] = {}

    def __len__(self) -> int:
        return len(self._found)

    def recall(self, credential: str, check: Callable[[str], tuple[T, float]]) -> T:
        """What ``check(credential)`` found, from memory while it holds, else by calling it
        (which raises for a credential that does not pass)."""
        remembered = self._found.get(credential)
        if remembered is not None:
            if time.time() < remembered[1]:
                return remembered[0]
            del self._found[credential]  # expired: checked again, and refused as such
        found = check(credential)
        if len(self._found) >= self._limit:
            del self._found[next(iter(self._found))]
        self._found[credential] = found
        return found[0]
