"""What the backends may believe about a request's head: its host, client, scheme and method.

Checked first of the request checks (``gateway.middleware.checks``), right after the request
context (it answers with the request id) and before authentication, so nothing later, neither the
access policy nor either backend, sees a header this module removes or a host it refuses::

    head = RequestHead(allowed_hosts=["127.0.0.1", "localhost", "[::1]"],
                       trusted_proxies=["10.0.0.0/8"])
    refusal = head.check(scope, headers)   # headers: the HeaderScan; a 400 Refusal, or None
    RequestHeadMiddleware(app, allowed_hosts=[...])   # the same, as ASGI middleware

For every HTTP and websocket request it

1. **Host.** Requires exactly one ``Host`` header on HTTP/1.1 (HTTP/1.0 may omit it; the
   backends then use the server's own address), shaped ``host[:port]``, whose host (the port is
   ignored) is in ``allowed_hosts``: an exact name or address (``localhost``, ``[::1]``), a
   wildcard subdomain (``*.example.com`` matches ``a.example.com``, not ``example.com``), or
   ``*`` for any. Anything else is a JSON 400. Both sides build absolute URLs and redirects
   from ``Host`` (Flask's ``url_for(_external=True)``, Starlette's ``request.url_for``), so a
   ``Location`` header can only name an allowed host.
2. **Forwarding headers.** ``Forwarded``, ``X-Forwarded-*`` and ``X-Real-IP`` are believed only
   from a peer whose address is in ``trusted_proxies`` (addresses or networks, ``*`` for any).
   From such a peer, ``X-Forwarded-For`` sets the client address (the right-most address that
   is not itself a trusted proxy, as uvicorn does) and ``X-Forwarded-Proto`` (``http`` or
   ``https``) the scheme; ``X-Forwarded-Host`` must name an allowed host too (400 otherwise)
   but never replaces ``Host``; the headers are passed on, so a Flask app wrapped in
   ``ProxyFix`` keeps working. ``Forwarded`` (RFC 7239) is passed on but not interpreted. From
   any other peer all of them are **removed** before authentication and both backends, so a
   client cannot change the address, scheme or host that the gateway, its logs, flag
   stickiness or a ``ProxyFix``-wrapped Flask app see.
3. **Cookies.** A ``Cookie`` header that is not valid UTF-8 is a JSON 400: Werkzeug (in the
   session backend and in Flask) would raise on it and answer 500.
4. **Method.** Must be an upper-case token (``[A-Z]{1,32}``); anything else (``get``,
   ``M-SEARCH``) is a JSON 400, since two parsers may disagree on what it means.
5. **Method overrides.** ``X-HTTP-Method-Override``, ``X-HTTP-Method`` and
   ``X-Method-Override`` are removed: the policy is decided on the request's real method, and
   a backend that honours an override header must never turn that decision into another one.

Security caveat, bluntly: ``trusted_proxies`` must list only proxies that overwrite (not
append to) ``X-Forwarded-Proto`` and ``X-Forwarded-Host``; a proxy that passes a client's
forged header through makes the gateway believe it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import structlog
from starlette.types import ASGIApp, Scope

from gateway.errors import Refusal
from gateway.http_tokens import HOST, is_method
from gateway.middleware.checks import RequestChecksMiddleware
from gateway.middleware.header_scan import (
    FORWARDED_PREFIX,
    FORWARDING,
    METHOD_OVERRIDES,
    HeaderScan,
)

log = structlog.get_logger("gateway.request_head")

_COMMON_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
#: Cache sizes: hosts and peers seen are few in practice; the caches stop growing at this size.
_CACHE_LIMIT = 1024

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_BAD_METHOD = Refusal(400, "the request method must be an upper-case token")
_BAD_COOKIE = Refusal(400, "the Cookie header is not valid UTF-8")
_TWO_HOSTS = Refusal(400, "more than one Host header")
_NO_HOST = Refusal(400, "the request has no Host header")
_HOST_REFUSED = Refusal(400, "the Host header names a host this server won't serve")
_FORWARDED_HOST_REFUSED = Refusal(400, "X-Forwarded-Host names a host this server does not serve")


class RequestHead:
    """The checks above, as one call: ``check(scope)`` refuses, or mends the scope and passes."""

    def __init__(
        self,
        *,
        allowed_hosts: Iterable[str] = ("127.0.0.1", "localhost", "[::1]"),
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        patterns = [pattern.lower() for pattern in allowed_hosts]
        self._any_host = "*" in patterns
        self._exact_hosts = frozenset(p for p in patterns if not p.startswith("*"))
        self._host_suffixes = tuple(p[1:] for p in patterns if p.startswith("*."))
        #: Raw Host values already found allowed (with their port): one lookup per request.
        self._allowed_values: dict[bytes, bool] = {}
        proxies = list(trusted_proxies)
        self._trust_everyone = "*" in proxies
        self._proxy_networks: tuple[Network, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in proxies if entry != "*"
        )
        self._has_proxies = bool(proxies)
        self._trusted_peers: dict[str, bool] = {}
        self._log = log.bind()

    def check(self, scope: Scope, headers: HeaderScan) -> Refusal | None:
        """An HTTP or websocket request's head (``headers``: its scan): a 400 refusal, or
        ``None`` to go on (with the forwarding headers and method overrides applied or
        removed)."""
        if scope["type"] == "http":
            method: str = scope["method"]
            if method not in _COMMON_METHODS and not is_method(method):
                return _BAD_METHOD
        if headers.bad_cookie:
            # Werkzeug decodes the Cookie header as UTF-8 and raises on anything else: the
            # session backend and Flask itself would both fail on it.
            return _BAD_COOKIE
        if headers.hosts > 1:
            return _TWO_HOSTS
        host = headers.host
        if host is None:
            if scope.get("http_version", "1.1") not in ("1.0", "0.9"):
                return _NO_HOST
        elif not self._host_allowed(host):
            return _HOST_REFUSED
        if headers.special:
            return self._forwarding(scope)
        return None

    # -- host ----------------------------------------------------------------------------------

    def _host_allowed(self, value: bytes) -> bool:
        if value in self._allowed_values:
            return True
        match = HOST.match(value)
        if match is None:
            return False
        name = match.group(1).decode("ascii").lower()
        allowed = (
            self._any_host
            or name in self._exact_hosts
            or any(name.endswith(suffix) for suffix in self._host_suffixes)
        )
        if allowed and len(self._allowed_values) < _CACHE_LIMIT:
            self._allowed_values[value] = True
        return allowed

    # -- forwarding and overrides --------------------------------------------------------------

    def _forwarding(self, scope: Scope) -> Refusal | None:
        """Apply or remove forwarding headers, remove method overrides."""
        trusted = self._has_proxies and self._peer_trusted(scope)
        kept: list[tuple[bytes, bytes]] = []
        removed: list[str] = []
        forwarded_for: list[bytes] = []
        forwarded_proto: bytes | None = None
        forwarded_host: bytes | None = None
        for name, value in scope["headers"]:
            if name in METHOD_OVERRIDES:
                removed.append(name.decode("latin-1"))
                continue
            if name in FORWARDING or name.startswith(FORWARDED_PREFIX):
                if not trusted:
                    removed.append(name.decode("latin-1"))
                    continue
                if name == b"x-forwarded-for":
                    forwarded_for.append(value)
                elif name == b"x-forwarded-proto":
                    forwarded_proto = value
                elif name == b"x-forwarded-host":
                    forwarded_host = value
            kept.append((name, value))
        if removed:
            scope["headers"] = kept
            self._log.debug("request.headers_removed", headers=sorted(set(removed)))
        if not trusted:
            return None
        if forwarded_host is not None:
            last = forwarded_host.rsplit(b",", 1)[-1].strip()
            if not self._host_allowed(last):
                return _FORWARDED_HOST_REFUSED
        if forwarded_for:
            client = self._forwarded_client(b",".join(forwarded_for))
            if client is not None:
                scope["client"] = (client, 0)
        if forwarded_proto is not None:
            proto = forwarded_proto.rsplit(b",", 1)[-1].strip().lower()
            if proto in (b"http", b"https"):
                secure = proto == b"https"
                if scope["type"] == "websocket":
                    scope["scheme"] = "wss" if secure else "ws"
                else:
                    scope["scheme"] = "https" if secure else "http"
        return None

    def _peer_trusted(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client:
            return False
        if self._trust_everyone:
            return True
        return self._address_trusted(str(client[0]))

    def _address_trusted(self, address: str) -> bool:
        known = self._trusted_peers.get(address)
        if known is not None:
            return known
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            trusted = False
        else:
            trusted = any(ip in network for network in self._proxy_networks)
        if len(self._trusted_peers) < _CACHE_LIMIT:
            self._trusted_peers[address] = trusted
        return trusted

    def _forwarded_client(self, header: bytes) -> str | None:
        """The right-most address that is not a trusted proxy (proxies append)."""
        addresses = []
        for part in header.decode("latin-1").split(","):
            candidate = part.strip()
            try:
                addresses.append(str(ipaddress.ip_address(candidate)))
            except ValueError:
                return None  # a malformed list: believe none of it
        if not addresses:
            return None
        if self._trust_everyone:
            return addresses[0]
        for address in reversed(addresses):
            if not self._address_trusted(address):
                return address
        return addresses[0]


class RequestHeadMiddleware(RequestChecksMiddleware):
    """``RequestHead`` alone, as ASGI middleware (the gateway runs it with the other checks, in
    one layer: ``gateway.middleware.checks``)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Iterable[str] = ("127.0.0.1", "localhost", "[::1]"),
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        super().__init__(
            app, head=RequestHead(allowed_hosts=allowed_hosts, trusted_proxies=trusted_proxies)
        )
