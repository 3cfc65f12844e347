"""Cross-site request forgery: a browser request that changes state must prove it is same-site.

A cookie rides along on every request the browser makes, the forged ones included; a bearer
token or an API key does not (a page on another site cannot set ``Authorization`` or
``X-API-Key``). So only a request the gateway authenticated by cookie (the Flask session) and
whose method changes state is checked, and it must

1. carry ``X-Gateway-CSRF: 1``: an HTML form cannot set a header, and a cross-site ``fetch``
   with a custom header needs a CORS preflight, which the gateway never grants;
2. when the browser says where it comes from, come from this origin: ``Sec-Fetch-Site`` must be
   ``same-origin`` and ``Origin``, when sent, must be this request's scheme and host.

The first alone stops forms and every request sent without a preflight; the second is defence
in depth for a browser bug or a same-site sibling. No token to store or rotate (OWASP's "custom
request header" defence). The admin API reads every body as JSON whatever its Content-Type, so
the page sends JSON and nothing else is asked of the body::

    problem = csrf_problem(scope, facts.identity)   # None, or why: answer 403 with it
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import Scope

from gateway.context import Identity

#: The header the dashboard's script sends; a form cannot.
CSRF_HEADER = "X-Gateway-CSRF"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Identity methods whose credential the browser sends by itself.
_AMBIENT = frozenset({"session"})


def csrf_problem(scope: Scope, identity: Identity) -> str | None:
    """Why this request may be a forgery, or ``None`` when it is fine."""
    if scope.get("method", "GET") in SAFE_METHODS or identity.method not in _AMBIENT:
        return None
    headers = Headers(scope=scope)
    if headers.get(CSRF_HEADER) != "1":
        return f"a change made with a session cookie needs the {CSRF_HEADER}: 1 header"
    site = headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return f"a change made with a session cookie must come from this site (not {site})"
    origin = headers.get("origin")
    if origin is not None and origin != _own_origin(scope, headers):
        return "a change made with a session cookie must come from this origin"
    return None


def _own_origin(scope: Scope, headers: Headers) -> str:
    return f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
