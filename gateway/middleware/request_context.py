"""The outermost middleware: canonical path, request id, logging context, the access line.

For every HTTP request it

1. decides the canonical path (``gateway.canonical``) or answers 400 before anything else runs;
2. keeps a valid incoming ``X-Request-ID`` or makes one, binds it into structlog's context (so
   every line logged while serving the request carries it, in Flask threads too) and echoes it;
3. creates the request's ``RequestFacts`` in the scope, and records the response's status in
   them (``facts.status``) for the layers further in that need it (tracing);
4. adds ``X-Gateway-Backend`` naming the side that answered, and, when the real scheme is https
   (as uvicorn reports it, after ``server.trusted_proxies``), marks every cookie either side sets
   ``Secure``;
5. turns an exception that escapes a backend into a JSON 500 with the request id (or, once bytes
   are on the wire, lets the server abort the connection so a half response never looks whole;
   after a complete response, as Starlette's error middleware leaves it, only logs it), with
   exactly one error event;
6. writes exactly one access line when the request ends (``aborted`` when the app ended without
   ending a response it had started).

::

    app = RequestContextMiddleware(dispatcher, request_id_header="X-Request-ID")
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable, Sequence

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.canonical import canonical_path
from gateway.context import FACTS_KEY, RequestFacts
from gateway.errors import BadRequest, refuse, send_error
from gateway.log import write_access

#: Sees every finished HTTP request: its facts, its status (``None``: no answer was sent) and
#: its duration in seconds. Rollout outcomes are recorded this way.
Observer = Callable[[RequestFacts, int | None, float], None]

_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:@+=-]{1,128}$")
#: Request ids correlate log lines; they are not secrets, so a PRNG seeded from the OS (per
#: process) is enough, and spares a getrandom() system call per request that uuid4() makes.
_ids = random.Random(os.urandom(16))  # noqa: S311 - not a secret, see above


def _reseed_ids() -> None:
    _ids.seed(os.urandom(16))


# A forked child copies the generator's state: without a new seed, the workers of
# `gunicorn --preload` (which forks after the app was built) would hand out the same ids.
os.register_at_fork(after_in_child=_reseed_ids)


def new_request_id() -> str:
    """32 hex digits, like ``uuid4().hex``; distinct across processes, forked ones too."""
    return f"{_ids.getrandbits(128):032x}"


_BACKEND_HEADER = b"x-gateway-backend"


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        request_id_header: str = "X-Request-ID",
        backend_header: bool = True,
        access_log: bool = True,
        observers: Sequence[Observer] = (),
    ) -> None:
        self.app = app
        #: Called once per finished HTTP request with its facts, status and duration.
        self._observers = tuple(observers)
        self._request_id_header = request_id_header.lower().encode("latin-1")
        self._backend_header = backend_header
        # Bound once: the lazy proxy would rebuild the logger on every request.
        self._access = structlog.get_logger("gateway.access").bind() if access_log else None
        self._errors = structlog.get_logger("gateway.errors").bind()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = self._incoming_request_id(scope) or new_request_id()
        request_id_header = (self._request_id_header, request_id.encode("latin-1"))
        method = scope.get("method", "GET")
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
        status: int | None = None
        facts = RequestFacts(request_id=request_id, path=scope["path"], method=method)
        scope[FACTS_KEY] = facts
        try:
            try:
                facts.path = canonical_path(raw_path.split(b"?", 1)[0])
            except BadRequest as exc:
                status = exc.status
                await refuse(scope, send, exc.status, exc.reason, [request_id_header])
                return
            scope["path"] = facts.path

            completed = False

            async def send_with_headers(message: Message) -> None:
                nonlocal status, completed
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    completed = True
                elif message["type"] == "http.response.start":
                    facts.status = status = message["status"]
                    headers = [*message.get("headers", ()), request_id_header]
                    # Read now, not on arrival: a trusted proxy's X-Forwarded-Proto is applied
                    # further in (gateway.middleware.request_head).
                    if scope.get("scheme") in ("https", "wss"):
                        headers = [_secure_cookie(header) for header in headers]
                    if self._backend_header:
                        headers.append((_BACKEND_HEADER, facts.backend.encode("latin-1")))
                    message = {**message, "headers": headers}
                await send(message)

            try:
                await self.app(scope, receive, send_with_headers)
            except Exception:
                if completed:
                    # Starlette's error middleware sends its 500 and then re-raises. The client
                    # has a whole response: log the error once, and do not hand the server a
                    # second traceback to log.
                    self._errors.exception("request.failed", path=facts.path)
                    return
                if status is not None:
                    # Bytes are on the wire: a clean ending would pass a broken response off
                    # as whole. Let the server abort the connection.
                    facts.aborted = True
                    self._errors.exception("request.failed_mid_response", path=facts.path)
                    raise
                self._errors.exception("request.failed", path=facts.path)
                status = 500
                headers = [request_id_header]
                if self._backend_header:
                    headers.append((_BACKEND_HEADER, facts.backend.encode("latin-1")))
                await send_error(send, 500, "internal server error", request_id, headers)
            else:
                if status is not None and not completed and not facts.disconnected:
                    # The app ended without ending its response: the server cuts it off.
                    facts.aborted = True
        finally:
            if scope["type"] == "http":
                if self._access is not None:
                    _log_access(self._access, scope, facts, status, started)
                if self._observers:
                    seconds = time.perf_counter() - started
                    for observe in self._observers:
                        observe(facts, status, seconds)
            structlog.contextvars.reset_contextvars(**tokens)

    def _incoming_request_id(self, scope: Scope) -> str | None:
        for name, value in scope["headers"]:
            if name == self._request_id_header:
                if _VALID_REQUEST_ID.match(value):
                    incoming: bytes = value
                    return incoming.decode("ascii")
                return None
        return None


def _secure_cookie(header: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    name, value = header
    if name.lower() != b"set-cookie":
        return header
    attributes = {part.strip().split(b"=", 1)[0].lower() for part in value.split(b";")[1:]}
    return header if b"secure" in attributes else (name, value + b"; Secure")


def _log_access(
    access: structlog.typing.FilteringBoundLogger,
    scope: Scope,
    facts: RequestFacts,
    status: int | None,
    started: float,
) -> None:
    client = scope.get("client")
    identity = facts.identity
    write_access(
        access,
        {
            "request_id": facts.request_id,
            "method": facts.method,
            "path": facts.path,
            "route": facts.route,
            "backend": facts.backend,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            "client": f"{client[0]}:{client[1]}" if client else None,
            "user": identity.subject if identity.is_authenticated else "anonymous",
            "auth": identity.method,
            **facts.log_fields(),
        },
    )
