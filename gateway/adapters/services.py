"""New FastAPI (or any ASGI) services: loading, their lifespans, and calling them.

Starlette never runs the lifespan of a mounted app. The gateway drives each service's ASGI
lifespan protocol itself, in config order at start-up and in reverse at shut-down, and keeps the
state each lifespan yields, handing it to the service's requests as ``scope["state"]`` the way
uvicorn does for a top-level app::

    service = Service("catalog", fastapi_app, legacy=flask_app)   # legacy: for gateway.parity
    await service.startup()        # raises StartupError if the lifespan fails
    await service(scope, receive, send)
    await service.shutdown()
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth.shared_session import SessionBridge, SessionCodec
from gateway.errors import StartupError
from gateway.head import as_get
from gateway.inventory import service_routes
from gateway.parity.reference import as_legacy_app, bind_legacy_app, unbind_legacy_app
from gateway.path_template import parse_template, shape
from gateway.routes import RouteTable, Rule

log = structlog.get_logger("gateway.services")


class Service:
    """One new-side service: an ASGI app with a name and a lifespan the gateway drives."""

    def __init__(
        self,
        name: str,
        app: ASGIApp,
        *,
        bridge: SessionCodec | None = None,
        legacy: object = None,
    ) -> None:
        self.name = name
        #: The service's own app (lifespan, route listing).
        self.app = app
        self.state: dict[str, Any] = {}
        self._lifespan: _LifespanDriver | None = None
        #: Paths whose routes answer HEAD themselves (``@app.head``, Starlette's ``Route``).
        self._own_head = _head_routes(app)
        # Requests reach the app through the shared Flask session, when there is one.
        self._handler = SessionBridge(app, codec=bridge) if bridge is not None else app
        #: The legacy Flask app, which the parity helpers imitate (``gateway.parity``).
        self._legacy = as_legacy_app(legacy)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # uvicorn gives each request a shallow copy of the lifespan state; so does the gateway.
        scope["state"] = self.state.copy()
        if scope.get("method") == "HEAD" and (
            self._own_head is None or self._own_head.match("HEAD", scope["path"]) is None
        ):
            # Flask (and Starlette's Route) answer HEAD with the GET handler; FastAPI's routes
            # answer 405. The gateway routes HEAD with GET, so it runs the GET handler and drops
            # the body: a migrated route keeps answering HEAD as it did on legacy.
            scope, send = as_get(scope, send)
        guard = _ServerErrorGuard(send)
        token = bind_legacy_app(self._legacy)
        try:
            await self._handler(scope, receive, guard)
        finally:
            unbind_legacy_app(token)
        if guard.holds:
            await guard.release()

    async def __aenter__(self) -> Service:
        await self.startup()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def startup(self) -> None:
        driver = _LifespanDriver(self.app, self.state)
        self._lifespan = driver
        try:
            await driver.startup()
        except StartupError as exc:
            raise StartupError(f"service {self.name!r} failed to start: {exc}") from exc
        log.info("service.started", service=self.name, lifespan=driver.supported)

    async def shutdown(self) -> None:
        if self._lifespan is None:
            return
        driver, self._lifespan = self._lifespan, None
        try:
            await driver.shutdown()
        except StartupError as exc:
            log.error("service.shutdown_failed", service=self.name, error=str(exc))
            return
        log.info("service.stopped", service=self.name)


class _LifespanDriver:
    """Speaks the ASGI lifespan protocol to one app, as a server would."""

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self._app = app
        self._state = state
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        #: False when the app does not implement lifespan (it raised on the lifespan scope).
        self.supported = True

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self._state,
        }
        try:
            await self._app(scope, self._to_app.get, self._from_app.put)
        except BaseException as exc:
            await self._from_app.put({"type": "gateway.lifespan.crashed", "error": exc})
            if not isinstance(exc, Exception):
                raise
        else:
            await self._from_app.put({"type": "gateway.lifespan.returned"})

    async def startup(self) -> None:
        self._task = asyncio.create_task(self._run())
        await self._to_app.put({"type": "lifespan.startup"})
        reply = await self._from_app.get()
        if reply["type"] == "lifespan.startup.complete":
            return
        if reply["type"] == "lifespan.startup.failed":
            raise StartupError(_last_line(reply.get("message")) or "lifespan start-up failed")
        # The app returned, or raised, without answering: the ASGI spec says it does not
        # support lifespan and the server carries on. (Starlette and FastAPI answer
        # ``lifespan.startup.failed`` when their lifespan raises, which is handled above.)
        if reply["type"] == "gateway.lifespan.crashed":
            log.warning("service.lifespan_unsupported", error=repr(reply["error"]))
        self.supported = False

    async def shutdown(self) -> None:
        if not self.supported or self._task is None:
            return
        await self._to_app.put({"type": "lifespan.shutdown"})
        reply = await self._from_app.get()
        await asyncio.gather(self._task, return_exceptions=True)
        if reply["type"] == "lifespan.shutdown.failed":
            raise StartupError(_last_line(reply.get("message")) or "lifespan shut-down failed")
        if reply["type"] == "gateway.lifespan.crashed":
            raise StartupError(repr(reply["error"]))


class _ServerErrorGuard:
    """Holds back a 500 until the app returns. Starlette's error middleware answers an unhandled
    exception with its own plain-text 500 and then re-raises: the held answer is dropped, and
    the gateway's JSON 500 with the request id (and one error event) takes its place. A 500 the
    app returns on purpose goes out unchanged."""

    __slots__ = ("_held", "_send")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._held: list[Message] | None = None

    async def __call__(self, message: Message) -> None:
        if self._held is not None:
            self._held.append(message)
        elif message["type"] == "http.response.start" and message["status"] == 500:
            self._held = [message]
        else:
            await self._send(message)

    @property
    def holds(self) -> bool:
        """A 500 is held back (checked before awaiting ``release``: most responses hold none)."""
        return self._held is not None

    async def release(self) -> None:
        held, self._held = self._held, None
        for message in held or ():
            await self._send(message)


def _head_routes(app: ASGIApp) -> RouteTable[Rule] | None:
    """The app's routes that list HEAD, as a table; ``None`` when there are none."""
    templates: dict[str, str] = {}
    for template, methods, _ in service_routes(app, implicit=True):
        if "HEAD" not in methods:
            continue
        try:
            parse_template(template)
        except ValueError:
            continue  # a converter the gateway does not know: HEAD runs the GET handler there
        templates.setdefault(shape(template), template)
    rules = [Rule(template, frozenset({"HEAD"})) for template in templates.values()]
    return RouteTable(rules) if rules else None


def _last_line(message: str | None) -> str:
    """Starlette reports a failed lifespan with the whole traceback; its last line says what."""
    lines = [line for line in (message or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
