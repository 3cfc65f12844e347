"""One pass over a request's headers for all the request checks (``gateway.middleware.checks``).

The request head, the body limits and authentication each need a few headers: ``Host`` and
``Cookie``, the forwarding and method-override headers; ``Content-Length`` and
``Transfer-Encoding``; ``Authorization``, the headers the auth backends read and the identity
headers to strip. Each walked the whole list for its own: with a browser's eleven headers the
three walks cost 3.1 µs a request, one walk that looks every name up once about 0.7
(``bench/README.md``). ``HeaderScanner`` knows every name any check asks about, and its
``HeaderScan`` holds what each check reads::

    scanner = HeaderScanner(credential_headers={b"authorization"}, strip_headers={b"x-user-id"})
    scan = scanner.scan(scope["headers"])
    scan.hosts, scan.declared, scan.authorizations      # 1, 0, 0 for a plain GET
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: What a header name means to the checks: a bit each, as one name can mean several things
#: (``Authorization`` is counted, and a backend reads it; ``Cookie`` is checked, and read).
_HOST = 1
_COOKIE = 2
#: A forwarding or method-override header: the request head applies or removes it.
_SPECIAL = 4
_LENGTH = 8
_CHUNKED = 16
_AUTHORIZATION = 32
#: A header some auth backend reads.
_CREDENTIAL = 64
#: An identity header no client may send.
_STRIP = 128

#: The method-override headers the request head removes (``gateway.middleware.request_head``).
METHOD_OVERRIDES = frozenset({b"x-http-method-override", b"x-http-method", b"x-method-override"})
#: The forwarding headers with a name of their own; every ``x-forwarded-*`` is one too.
FORWARDING = frozenset({b"forwarded", b"x-real-ip"})
FORWARDED_PREFIX = b"x-forwarded-"


@dataclass(slots=True)
class HeaderScan:
    """What the checks need from one request's headers."""

    #: The last ``Host`` value, and how many there were.
    host: bytes | None = None
    hosts: int = 0
    #: A ``Cookie`` header is not valid UTF-8.
    bad_cookie: bool = False
    #: Forwarding or method-override headers are present.
    special: bool = False
    #: The declared body size: 0 without a body, ``None`` when unknown (chunked), as
    #: ``gateway.request_body.declared_body_size`` says.
    declared: int | None = 0
    authorizations: int = 0
    #: A header an auth backend reads is present (identity headers to strip do not count).
    credential: bool = False
    #: An identity header to strip is present.
    strip: bool = False


class HeaderScanner:
    def __init__(
        self,
        *,
        credential_headers: Iterable[bytes] = (),
        strip_headers: Iterable[bytes] = (),
    ) -> None:
        kinds: dict[bytes, int] = {
            b"host": _HOST,
            b"cookie": _COOKIE,
            b"content-length": _LENGTH,
            b"transfer-encoding": _CHUNKED,
            b"authorization": _AUTHORIZATION,
        }
        for name in METHOD_OVERRIDES | FORWARDING:
            kinds[name] = _SPECIAL
        for name in credential_headers:
            kinds[name] = kinds.get(name, 0) | _CREDENTIAL
        for name in strip_headers:
            kinds[name] = kinds.get(name, 0) | _STRIP
        for name in kinds:
            if name.startswith(FORWARDED_PREFIX):
                kinds[name] |= _SPECIAL  # found by name, so never reaches the prefix test
        self._kinds = kinds

    def scan(self, headers: Iterable[tuple[bytes, bytes]]) -> HeaderScan:
        result = HeaderScan()
        kind_of = self._kinds.get
        size = 0
        unknown_size = False
        for name, value in headers:
            kind = kind_of(name)
            if kind is None:
                # One byte compared for most names; the prefix only for those starting with x.
                if name[:1] == b"x" and name.startswith(FORWARDED_PREFIX):
                    result.special = True
                continue
            if kind & _HOST:
                result.host = value
                result.hosts += 1
            if kind & _COOKIE and not value.isascii() and not _is_utf8(value):
                result.bad_cookie = True
            if kind & _SPECIAL:
                result.special = True
            if kind & _LENGTH:
                # The server has checked the framing; a value it let through is digits.
                if value.isdigit():
                    size = int(value)
                else:
                    unknown_size = True
            if kind & _CHUNKED:
                unknown_size = True
            if kind & _STRIP:
                result.strip = True
                continue
            if kind & _AUTHORIZATION:
                result.authorizations += 1
            if kind & _CREDENTIAL:
                result.credential = True
        result.declared = None if unknown_size else size
        return result


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
