"""What a valid method, host and proxy entry look like: one definition for the settings that
name them and the middleware that checks requests against them.

    >>> is_method("GET"), is_method("get"), is_method("M-SEARCH")
    (True, False, False)
    >>> host_pattern_problem("*.example.com") is None
    True
    >>> trusted_proxy_problem("10.0.0.0/8") is None
    True
"""

from __future__ import annotations

import ipaddress
import re

#: ``host[:port]`` as a ``Host`` header carries it: a name or a bracketed IPv6 address.
HOST = re.compile(rb"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::[0-9]{1,5})?$")
#: An HTTP method as the gateway accepts it: an upper-case token. Two parsers may disagree on
#: what anything else (``get``, ``M-SEARCH``) means.
METHOD = re.compile(r"^[A-Z]{1,32}$")


def is_method(value: str) -> bool:
    return METHOD.match(value) is not None


def host_pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a valid ``allowed_hosts`` entry, or ``None``."""
    if pattern == "*":
        return None
    name = pattern[2:] if pattern.startswith("*.") else pattern
    match = HOST.match(name.encode("latin-1", "replace"))
    if match is None or match.group(0) != match.group(1) or "*" in name:
        return f"{pattern!r} is not a host name, address or '*.domain' (and takes no port)"
    return None


def trusted_proxy_problem(entry: str) -> str | None:
    """Why ``entry`` is not a valid ``trusted_proxies`` entry, or ``None``."""
    if entry == "*":
        return None
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return f"{entry!r} is not an IP address or network"
    return None
