"""One canonical path per request, decided before anything else looks at the path.

The route match, the access policy, the flag key, the log line and the backend all use the string
this module returns, and the backend routes exactly that string (the gateway writes it back into
``scope["path"]``, which both Starlette routing and a2wsgi's ``PATH_INFO`` read).

The policy is *reject, don't repair*: a path whose meaning depends on who parses it gets a 400
before any backend sees it. Rejected, on the raw bytes of the request target:

- an encoded ``/`` or ``\\`` (``%2F``, ``%5C``): one side would split on it and the other not;
- a literal ``\\``: some stacks treat it as a separator;
- after percent-decoding once: control characters (including NUL), invalid UTF-8, dot segments
  (``/./``, ``/../``) and empty segments (``//``, including a leading ``//`` that Werkzeug would
  strip and Starlette would keep). A single trailing ``/`` is allowed and significant.

Percent-decoding happens exactly once: ``%252F`` arrives at the backend as the three characters
``%2F``, never as a separator.

    >>> canonical_path(b"/api/books/%31")
    '/api/books/1'
    >>> canonical_path(b"/api/%2e%2e/admin")
    Traceback (most recent call last):
    ...
    gateway.errors.BadRequest: the request path contains an empty or dot segment
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from gateway.errors import BadRequest
from gateway.recent import (
    LONGEST_PATH_REMEMBERED,
    PATHS_REMEMBERED,
    Remembering,
    remember_recent,
)

_ENCODED_SEPARATOR = re.compile(rb"%(?:2[fF]|5[cC])")
_FORBIDDEN_BYTES = re.compile(rb"[\x00-\x1f\x7f\\]")
_AMBIGUOUS_SEGMENTS = re.compile(r"//|/\.\.?(?:/|$)")


def _canonical_path(raw_path: bytes) -> str:
    """The canonical path for a raw request target path (no query string); raises ``BadRequest``."""
    if not raw_path.startswith(b"/"):
        raise BadRequest("the request path must start with '/'")
    decoded = raw_path
    if b"%" in raw_path:
        if _ENCODED_SEPARATOR.search(raw_path):
            raise BadRequest("the request path contains an encoded '/' or '\\'")
        decoded = unquote_to_bytes(raw_path)
    if _FORBIDDEN_BYTES.search(decoded):
        raise BadRequest("the request path contains a control character or '\\'")
    try:
        path = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the request path is not valid UTF-8") from None
    if _AMBIGUOUS_SEGMENTS.search(path):
        raise BadRequest("the request path contains an empty or dot segment")
    return path


#: ``canonical_path(raw_path)``: the canonical path for a raw request target path (no query
#: string); raises ``BadRequest``. Most traffic repeats a small set of paths: a remembered one
#: costs a fifth of the checks (0.6 µs), and a refusal is never remembered (it raises each time).
canonical_path: Remembering[str] = remember_recent(
    _canonical_path, size=PATHS_REMEMBERED, longest=LONGEST_PATH_REMEMBERED
)
