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
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from werkzeug.http import parse_cookie


def read_cookie(headers: Iterable[tuple[bytes, bytes]], name: str) -> str | None:
    """The value of the first cookie called ``name`` in ASGI ``headers``; ``None`` if absent."""
    cookie_headers = [value for key, value in headers if key == b"cookie"]
    if not cookie_headers:
        return None
    # Latin-1 text is what WSGI hands Flask (a2wsgi decodes so); Werkzeug decodes UTF-8 from it.
    joined = b"; ".join(cookie_headers).decode("latin-1")
    return parse_cookie(joined).get(name)


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
