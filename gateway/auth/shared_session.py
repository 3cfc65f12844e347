"""The legacy Flask session, readable and writable by the new services.

A user who logged in through Flask's ``POST /login`` carries one signed session cookie. Requests
that a new service answers get that session as a mutable mapping; when the handler changes it,
the response carries a new cookie signed exactly as Flask signs it (same name, key, path, flags),
so Flask sees the change on the next request::

    # gateway side: wrap each service
    service_app = SessionBridge(service_app, codec=codec)

    # service side (FastAPI)
    from gateway.fastapi_support import flask_session
    session = flask_session(request)
    session["theme"] = "dark"

An invalid or expired cookie reads as an empty session, as Flask treats it. A cookie sent twice
is read as Flask and the gateway's authentication read it: the first one (``gateway.cookies``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, MutableMapping
from typing import Any, Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.cookies import read_cookie
from gateway.errors import InvalidCredentials

#: Where the session lives in the scope of a service request.
SESSION_KEY = "gateway.session"


class SessionCodec(Protocol):
    @property
    def cookie_name(self) -> str: ...

    def load(self, value: str) -> dict[str, Any]: ...

    def dump(self, data: MutableMapping[str, Any]) -> str: ...

    def set_cookie_header(self, value: str, *, permanent: bool, https: bool) -> bytes: ...

    def delete_cookie_header(self, *, https: bool) -> bytes: ...


class SharedSession(MutableMapping[str, Any]):
    """A Flask session as a mapping: loaded on first use, written back only when changed."""

    def __init__(self, codec: SessionCodec, cookie: str | None) -> None:
        self._codec = codec
        self._cookie = cookie
        self._data: dict[str, Any] | None = None
        self.modified = False

    def _loaded(self) -> dict[str, Any]:
        if self._data is None:
            self._data = {}
            if self._cookie:
                # Flask also starts a fresh session for a bad cookie.
                with contextlib.suppress(InvalidCredentials):
                    self._data = self._codec.load(self._cookie)
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._loaded()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._loaded()[key] = value
        self.modified = True

    def __delitem__(self, key: str) -> None:
        del self._loaded()[key]
        self.modified = True

    def __iter__(self) -> Iterator[str]:
        return iter(self._loaded())

    def __len__(self) -> int:
        return len(self._loaded())

    @property
    def permanent(self) -> bool:
        # Flask keeps SessionMixin.permanent in the data under this key.
        return bool(self._loaded().get("_permanent", False))

    def cookie_header(self, *, https: bool) -> bytes:
        if not self._loaded():
            return self._codec.delete_cookie_header(https=https)
        value = self._codec.dump(self._loaded())
        return self._codec.set_cookie_header(value, permanent=self.permanent, https=https)


class SessionBridge:
    """Wraps a service: puts the shared session in the scope and writes it back if changed."""

    def __init__(self, app: ASGIApp, *, codec: SessionCodec) -> None:
        self.app = app
        self._codec = codec

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The cookie the gateway authenticated with and Flask would read: the first of its name.
        cookie = read_cookie(scope["headers"], self._codec.cookie_name)
        session = SharedSession(self._codec, cookie)
        scope[SESSION_KEY] = session
        https = scope.get("scheme") == "https"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and session.modified:
                headers = [
                    *message.get("headers", ()),
                    (b"set-cookie", session.cookie_header(https=https)),
                    (b"vary", b"Cookie"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def session_from_scope(scope: Scope) -> SharedSession:
    """The shared session of a service request; ``LookupError`` if the gateway has none."""
    session = scope.get(SESSION_KEY)
    if not isinstance(session, SharedSession):
        raise LookupError(
            "no shared Flask session: the gateway's [auth.session] is not configured, "
            "or this request did not come through the gateway"
        )
    return session
