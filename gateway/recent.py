"""Remembering recent answers of a pure function, with a bound on memory whatever clients send.

Most traffic repeats a small set of paths and headers, so the request path remembers what it
worked out for them: a route match, a canonical path, a parsed ``Cookie`` header. The answers are
kept by functools' C cache (least recently used forgotten first), but only for short arguments:
a client sending endless distinct 30 KiB paths would otherwise make each cache hold thousands of
them. Longer arguments are worked out every time, as they were before anything was remembered::

    match = remember_recent(table_walk, size=1024, longest=256)
    match("GET", "/api/books/7")      # walked once, then remembered
    match("GET", "/x" * 1000)         # walked every time

The cache keys on every argument; the length bound is on the last one (a path, a header). The
function must be pure and its answers must not be changed by callers (they are shared).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sized
from typing import Any, Protocol, TypeVar, cast

#: How many request paths a path cache keeps, and the longest it keeps: the route tables
#: (``gateway.routes``) and the canonical path (``gateway.canonical``) remember the same paths.
PATHS_REMEMBERED = 1024
LONGEST_PATH_REMEMBERED = 256

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Remembering(Protocol[T_co]):
    """The function, with functools' ``cache_info()`` and ``cache_clear()`` for its memory."""

    def __call__(self, *args: Any) -> T_co: ...

    def cache_info(self) -> functools._CacheInfo: ...

    def cache_clear(self) -> None: ...


def remember_recent(function: Callable[..., T], *, size: int, longest: int) -> Remembering[T]:
    """``function``, remembering its answers for the last ``size`` distinct arguments whose last
    one is at most ``longest`` long (a raise is never remembered)."""
    remembered = functools.lru_cache(maxsize=size)(function)

    def answer(*args: Any) -> T:
        last: Sized = args[-1]
        if len(last) <= longest:
            return remembered(*args)
        return function(*args)

    answer.cache_info = remembered.cache_info  # type: ignore[attr-defined]
    answer.cache_clear = remembered.cache_clear  # type: ignore[attr-defined]
    return cast(Remembering[T], answer)
