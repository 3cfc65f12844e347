"""The gateway's exceptions, and the one JSON error body both sides of the gateway answer with.

::

    GatewayError
    ├── ConfigError          an operator mistake found at start-up: names file, key and problem
    ├── StartupError         an app or service failed while the gateway was starting
    ├── DuplicateRouteError  two routes (or policies, or limits) claim one method and path
    ├── InvalidCredentials   a credential is present but not valid (an auth backend's answer)
    ├── StoreUnavailable     the flag and report storage cannot be read or written right now
    │                        (down, timed out, closed, or holding something invalid)
    └── BadRequest           a request the gateway refuses before any backend sees it (400)
        └── BodyRejected     a request body over its size or time limit (413, 408), raised
                             from ``receive`` while a backend reads it

Config and start-up errors are caught by the CLI, printed as one line per problem and turned into
a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.types import Scope, Send

from gateway.context import GATEWAY, request_facts
from gateway.request_body import declared_body_size


class GatewayError(Exception):
    """Base class for every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """One or more problems in the configuration; each names where it comes from and the key."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    @classmethod
    def at(cls, source: str, key: str, problem: str) -> ConfigError:
        return cls([f"{source}: {key}: {problem}"])


class StartupError(GatewayError):
    """A legacy app or service could not be built or started."""


#: The ``gateway`` command's exit status for a ``ConfigError`` and for a ``StartupError``.
EXIT_CONFIG = 2
EXIT_STARTUP = 1


def failure_report(exc: ConfigError | StartupError) -> tuple[int, list[str]]:
    """The exit status and the lines the CLI prints for ``exc`` (one per problem, no traceback),
    whichever process found it: the command's own or a ``gateway serve`` worker."""
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG, [f"gateway: config error: {problem}" for problem in exc.problems]
    return EXIT_STARTUP, [f"gateway: start-up error: {exc}"]


class DuplicateRouteError(GatewayError, ValueError):
    """Two entries of one route table claim the same method on the same path shape."""


class InvalidCredentials(GatewayError):
    """A credential is present but not valid; the reason is logged, never sent to the client."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class StoreUnavailable(GatewayError):
    """The storage backend (a file, Redis) cannot be read or written right now: it is down,
    timed out, was closed, or holds something that is not valid. The message names the store."""


class BadRequest(GatewayError):
    """A request the gateway refuses itself, with the reason the client is told."""

    def __init__(self, reason: str, status: int = 400) -> None:
        self.reason = reason
        self.status = status
        super().__init__(reason)


class BodyRejected(BadRequest):
    """The request body broke its size (413) or time (408) limit while a backend was reading
    it; the limits middleware answers in the backend's place (``gateway.middleware.limits``)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """A check's answer that the request goes no further (``gateway.middleware.checks`` sends it
    with ``refuse``): the status, the reason the client is told, extra headers, and whether an
    access policy (not a malformed request) refused it."""

    status: int
    reason: str
    headers: tuple[tuple[bytes, bytes], ...] = ()
    denied: bool = False


async def refuse(
    scope: Scope,
    send: Send,
    status: int,
    reason: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    denied: bool = False,
) -> None:
    """Refuse a request in the gateway's own name, before (or instead of) any backend.

    The access line records the reason (as ``denied`` for an access policy's 401/403, as
    ``rejected`` otherwise) and ``backend=gateway``; an HTTP client gets the JSON error with the
    request id, a websocket handshake is closed with 1008 (policy violation). A refused request
    that came with a body says ``Connection: close``: its body is never read, and the server must
    not go on parsing (and discarding) it for the next request on the connection.
    """
    facts = request_facts(scope)
    facts.backend = GATEWAY
    if denied:
        facts.denied = reason
    else:
        facts.rejected = reason
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    if declared_body_size(scope) != 0:
        headers = [*headers, _CLOSE]
    await send_error(send, status, reason, facts.request_id, headers)


_CLOSE = (b"connection", b"close")


def error_body(status: int, message: str, request_id: str | None) -> bytes:
    """The JSON error shape shared with the demo apps.

    >>> error_body(404, "no such book", "4bf92f35")
    b'{"error":{"status":404,"message":"no such book"},"request_id":"4bf92f35"}'
    """
    payload = {"error": {"status": status, "message": message}, "request_id": request_id}
    return json.dumps(payload, separators=(",", ":")).encode()


async def send_error(
    send: Send,
    status: int,
    message: str,
    request_id: str | None,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Answer a request with a JSON error; the request id also travels in the body."""
    await send_json(send, status, error_body(status, message, request_id), headers)


async def send_json(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
    *,
    include_body: bool = True,
) -> None:
    """Send a complete JSON response (``include_body=False`` for HEAD: headers only)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body if include_body else b""})
