"""Reading a request's cookies the way the legacy Flask app reads them.

The gateway reads the session cookie in two places, to authenticate the request
(``gateway.auth.flask_session``) and to hand new services the legacy session
(``gateway.auth.shared_session``), and Flask reads it a third time when legacy serves the request.
All three must pick the same cookie, or the identity the gateway verified and the session a
handler sees could be two different users' when a request carries a cookie name twice. So every
read goes through Werkzeug's parser, as Flask's does: the first cookie of a name wins, and
several ``Cookie`` headers (HTTP/2 sends one per cookie) count as one, joined with ``"; "`` as
the legacy adapter joins them for Flask::

    session = read_cookie(scope["headers"], "session")   # str, or None when absent
    headers = without_cookie(scope["headers"], "session")   # every cookie of that name gone

Werkzeug's parser costs 10-15 µs per request (a regular expression per cookie, a ``MultiDict``),
and a browser sends the same ``Cookie`` header on every request, mostly without the cookie the
gateway looks for. So ``read_cookie`` answers "absent" without parsing when the name's bytes do
not occur in the header at all (a parsed name is a substring of the header, and the gateway's
request-head check has already refused a header that is not UTF-8), and keeps the first values
of the last ``_PARSED_LIMIT`` distinct headers of up to 4 KiB it parsed (``gateway.recent``;
``bench/auth_micro.py`` measures both).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from werkzeug.http import parse_cookie

from gateway.recent import remember_recent

#: Distinct ``Cookie`` headers whose parse is kept (least recently used forgotten first). A
#: header may be as long as the server's head limit (32 KiB by default); a browser's is mostly
#: far below 4 KiB, and only those are kept, so the memory stays bounded (about 3 MiB at most).
_PARSED_LIMIT = 256
_LONGEST_REMEMBERED = 4096


def read_cookie(headers: Iterable[tuple[bytes, bytes]], name: str) -> str | None:
    """The value of the first cookie called ``name`` in ASGI ``headers``; ``None`` if absent."""
    cookie_headers = [value for key, value in headers if key == b"cookie"]
    if not cookie_headers:
        return None
    joined = cookie_headers[0] if len(cookie_headers) == 1 else b"; ".join(cookie_headers)
    if name.encode() not in joined:
        return None
    return _first_values(joined).get(name)


def _parse_first_values(joined: bytes) -> dict[str, str]:
    """Each cookie's first value, as Werkzeug (and so Flask) reads the header. Callers only read
    the dict, which the cache shares between them."""
    # Latin-1 text is what WSGI hands Flask (a2wsgi decodes so); Werkzeug decodes UTF-8 from it.
    return parse_cookie(joined.decode("latin-1")).to_dict()


#: The first values of the last ``_PARSED_LIMIT`` distinct headers of at most
#: ``_LONGEST_REMEMBERED`` bytes (``gateway.recent``); a longer header is parsed every time.
_first_values = remember_recent(
    _parse_first_values, size=_PARSED_LIMIT, longest=_LONGEST_REMEMBERED
)


def without_cookie(headers: Sequence[tuple[bytes, bytes]], name: str) -> list[tuple[bytes, bytes]]:
    """``headers`` with every cookie called ``name`` taken out of each ``Cookie`` header (a
    header left empty is dropped); other cookies are kept byte for byte, as the client sent
    them. A pair is a cookie of that name when Werkzeug's parser reads it as one."""
    kept: list[tuple[bytes, bytes]] = []
    for key, value in headers:
        if key == b"cookie":
            pairs = [
                pair
                for pair in value.split(b";")
                if name not in parse_cookie(pair.decode("latin-1").strip())
            ]
            if not pairs:
                continue
            value = b";".join(pairs).strip()
        kept.append((key, value))
    return kept
