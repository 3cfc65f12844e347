"""The checks a request passes before any backend sees it, run as one ASGI layer.

Three concerns, each its own class in its own module and tested on its own:

1. the request head (``gateway.middleware.request_head.RequestHead``): host, forwarding
   headers, cookies, method, method overrides;
2. the body limits (``gateway.middleware.limits.BodyLimits``): size and time, HTTP only;
3. authentication and the access policy (``gateway.middleware.auth.Authenticator``).

``RequestChecksMiddleware`` walks the headers once for all three (``HeaderScanner``), runs the
checks in that order and sends the first refusal (``refuse``: a JSON error with the request id,
or a websocket close). As separate middleware each check cost a coroutine frame and a walk of
its own over the headers on every request; here they are plain calls in one frame, and nothing
wraps ``send`` unless a request body is being guarded (``bench/checks_micro.py`` times the
difference). Any check may be left out: ``RequestHeadMiddleware``, ``LimitsMiddleware`` and
``AuthMiddleware`` are this class with one check each::

    # head: a RequestHead, limits: a BodyLimits, auth: an Authenticator
    RequestChecksMiddleware(dispatcher, head=head, limits=limits, auth=auth)

It runs inside the request context (``gateway.middleware.request_context``): it needs the
request's facts and canonical path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.context import request_facts
from gateway.errors import Refusal, refuse
from gateway.middleware.header_scan import HeaderScanner

if TYPE_CHECKING:
    from gateway.middleware.auth import Authenticator
    from gateway.middleware.limits import BodyLimits
    from gateway.middleware.request_head import RequestHead


class RequestChecksMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        head: RequestHead | None = None,
        limits: BodyLimits | None = None,
        auth: Authenticator | None = None,
    ) -> None:
        self.app = app
        self.head = head
        self.limits = limits
        self.auth = auth
        self._scanner = (
            HeaderScanner()
            if auth is None
            else HeaderScanner(
                credential_headers=auth.credential_headers, strip_headers=auth.strip_headers
            )
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        headers = self._scanner.scan(scope["headers"])
        if self.head is not None:
            refusal = self.head.check(scope, headers)
            if refusal is not None:
                await _refuse(scope, send, refusal)
                return
        limits = self.limits
        guard = None
        if limits is not None and kind == "http":
            guarded = limits.guard(scope, receive, send, headers.declared)
            if isinstance(guarded, Refusal):
                await _refuse(scope, send, guarded)
                return
            guard = guarded
        auth = self.auth
        if auth is not None:
            facts = request_facts(scope)
            screened = auth.screen(scope, facts, headers)
            if isinstance(screened, Refusal):
                refusal = screened
            elif not screened:
                refusal = auth.admit(facts, ())
            else:
                identified = await auth.identify(scope, facts)
                if isinstance(identified, Refusal):
                    refusal = identified
                else:
                    refusal = auth.admit(facts, identified)
            if refusal is not None:
                await _refuse(scope, send, refusal)
                return
        if guard is None:
            await self.app(scope, receive, send)
        else:
            await guard.serve(self.app, scope)


async def _refuse(scope: Scope, send: Send, refusal: Refusal) -> None:
    await refuse(
        scope, send, refusal.status, refusal.reason, refusal.headers, denied=refusal.denied
    )
