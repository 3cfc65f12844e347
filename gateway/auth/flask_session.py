"""The legacy Flask app's session cookie, read and written exactly as the app does.

::

    codec = FlaskSessionCodec(legacy_app)            # raises SessionCodecError if it cannot
    backend = FlaskSessionBackend(codec, roles_for, subject_key="user", roles_cache_seconds=30)
    identity = await backend.authenticate(Headers({"cookie": "session=eyJ1c2VyIjoiYm9iIn0..."}))

    # A new service writing into the same session (what the app's views would do):
    value = codec.dump({**codec.load(old_value), "theme": "dark"})
    headers.append((b"set-cookie", codec.set_cookie_header(value, permanent=False, https=True)))

The codec takes everything from the app object: the session interface's own signing serializer
(``SECRET_KEY`` plus ``SECRET_KEY_FALLBACKS``, its salt and digest), cookie name and attributes,
and ``PERMANENT_SESSION_LIFETIME`` as the maximum age. The app's configuration is read once, when
the codec is built: change the secret and you restart both anyway.

Security caveats, bluntly:

* Anyone with ``SECRET_KEY`` (or a fallback key) can sign a session for any user. The gateway now
  holds that key too.
* A signed cookie cannot be revoked: it stays valid for ``PERMANENT_SESSION_LIFETIME`` (31 days
  by default) from when it was last written, logout or not, unless the roles loader says the user
  no longer exists. Without a roles loader a deleted user's session still authenticates.
* Flask session data is signed, not encrypted: the client can read everything in it.
* Only cookie sessions are supported. A subclass of ``SecureCookieSessionInterface`` that
  overrides ``open_session`` with different logic is not mirrored: only its serializer is used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadData, SignatureExpired
from starlette.datastructures import Headers
from werkzeug.http import dump_cookie

from gateway.auth import RawHeaders
from gateway.auth.verified import Verified
from gateway.context import Identity
from gateway.cookies import read_cookie, without_cookie
from gateway.errors import InvalidCredentials

#: Takes a subject, returns its roles, or ``None`` when the user no longer exists.
RolesLoader = Callable[[str], Iterable[str] | None]


class SessionCodecError(Exception):
    """The legacy app's sessions cannot be verified by the gateway; the message says why.

    The caller reports it as ``ConfigError.at(source, "auth.session", str(exc))``.
    """


class FlaskSessionCodec:
    """Verify, sign and format the legacy app's session cookie with the app's own settings."""

    def __init__(self, app: Flask) -> None:
        interface = app.session_interface
        if not isinstance(interface, SecureCookieSessionInterface):
            raise SessionCodecError(
                f"the legacy app stores sessions with {type(interface).__name__}; the gateway's "
                "session backend supports only Flask's signed-cookie sessions "
                "(SecureCookieSessionInterface)"
            )
        serializer = interface.get_signing_serializer(app)
        if serializer is None:
            raise SessionCodecError("the legacy app has no SECRET_KEY, so it has no sessions")
        self._app = app
        self._interface = interface
        self._serializer = serializer
        self._max_age = int(app.permanent_session_lifetime.total_seconds())
        self.cookie_name: str = interface.get_cookie_name(app)

    def load(self, cookie_value: str) -> dict[str, Any]:
        """The session data; ``InvalidCredentials`` when forged, tampered with or too old."""
        return self.load_until(cookie_value)[0]

    def load_until(self, cookie_value: str) -> tuple[dict[str, Any], float]:
        """The session data and the ``time.time()`` at which its signature grows too old."""
        try:
            data, signed_at = self._serializer.loads(
                cookie_value, max_age=self._max_age, return_timestamp=True
            )
        except SignatureExpired:
            # Raised only after the signature checked out, so "expired" is the truth.
            raise InvalidCredentials("expired session") from None
        except BadData:
            # Tampered with, or signed with a key the app no longer lists (rotated without
            # SECRET_KEY_FALLBACKS): indistinguishable; either way Flask starts an empty session.
            raise InvalidCredentials("bad session signature") from None
        if not isinstance(data, dict):
            raise InvalidCredentials("session is not a mapping")
        return data, signed_at.timestamp() + self._max_age

    def dump(self, data: Mapping[str, Any]) -> str:
        """A signed cookie value holding ``data``, as the app's ``save_session`` writes it."""
        value: str = self._serializer.dumps(dict(data))
        return value

    def set_cookie_header(self, value: str, *, permanent: bool, https: bool) -> bytes:
        """A ``Set-Cookie`` header value; ``https`` adds ``Secure`` whatever the app says."""
        session = self._interface.session_class()
        session.permanent = permanent
        return self._cookie(
            value, expires=self._interface.get_expiration_time(self._app, session), https=https
        )

    def delete_cookie_header(self, *, https: bool) -> bytes:
        """A ``Set-Cookie`` value that removes the session, as Flask does for an emptied one."""
        return self._cookie("", expires=0, max_age=0, https=https)

    def _cookie(
        self, value: str, *, expires: Any, https: bool, max_age: int | None = None
    ) -> bytes:
        app, interface = self._app, self._interface
        header = dump_cookie(
            self.cookie_name,
            value,
            max_age=max_age,
            expires=expires,
            path=interface.get_cookie_path(app),
            domain=interface.get_cookie_domain(app),
            secure=interface.get_cookie_secure(app) or https,
            httponly=interface.get_cookie_httponly(app),
            samesite=interface.get_cookie_samesite(app),
            partitioned=interface.get_cookie_partitioned(app),
            max_size=app.config["MAX_COOKIE_SIZE"],
        )
        return header.encode("latin-1")


def with_app_context(app: Flask, loader: RolesLoader) -> RolesLoader:
    """Run ``loader`` inside ``app``'s application context, so it may use ``get_db()`` and
    ``current_app`` like a view does; the context's teardown closes what it opened."""

    def load(subject: str) -> Iterable[str] | None:
        with app.app_context():
            roles = loader(subject)
            if roles is None or isinstance(roles, str):
                return roles  # the backend rejects a str; None means "no such user"
            # Materialised here: a lazy iterable may still need the connection teardown closes.
            return tuple(roles)

    return load


@dataclass(frozen=True, slots=True)
class _Cached:
    roles: frozenset[str] | None
    expires: float


class FlaskSessionBackend:
    """The legacy session cookie: no user ``None``, a user ``Identity``, bad ones invalid."""

    name = "session"
    credential_headers = frozenset({b"cookie"})
    #: Bound on cached subjects (and on remembered cookies), so a flood of distinct valid
    #: sessions cannot grow memory.
    max_cached = 10_000

    def __init__(
        self,
        codec: FlaskSessionCodec,
        roles_loader: RolesLoader | None = None,
        *,
        subject_key: str = "user",
        roles_cache_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._codec = codec
        self._subject_key = subject_key
        self._loader = roles_loader
        self._ttl = roles_cache_seconds
        self._clock = clock
        # Touched only on the event loop, so no lock. Insertion order is expiry order (one TTL).
        self._cache: dict[str, _Cached] = {}
        #: Cookie values whose signature checked out -> the session's subject (``None``: a
        #: session with no user), until the signature grows too old. Roles are still looked up
        #: (and cached) per request, as before.
        self._verified = Verified[str | None](limit=self.max_cached)

    def without_credential(self, headers: RawHeaders) -> RawHeaders:
        """Every cookie of the session's name removed; other cookies are kept as sent."""
        return without_cookie(headers, self._codec.cookie_name)

    async def authenticate(self, headers: Headers) -> Identity | None:
        # Read as Flask reads it (the first cookie of a name wins), and as the shared session
        # that services see is read: one identity, one session.
        value = read_cookie(headers.raw, self._codec.cookie_name)
        if not value:
            return None  # Flask treats an empty cookie as no session too
        subject = self._verified.recall(value, self._subject)
        if subject is None:
            return None  # a valid session with no user: flash messages, or logged out
        roles = await self._roles(subject)
        return Identity(subject=subject, roles=roles, method=self.name, claims={})

    def _subject(self, value: str) -> tuple[str | None, float]:
        """The subject of a session cookie, its signature checked, and the time until which
        that signature stays young enough."""
        data, valid_until = self._codec.load_until(value)
        subject = data.get(self._subject_key)
        if isinstance(subject, int) and not isinstance(subject, bool):
            # Flask apps often keep a numeric user id (Flask's own tutorial, flaskr, does).
            subject = str(subject)
        if subject is not None and (not isinstance(subject, str) or not subject):
            raise InvalidCredentials("session subject is not a non-empty string or an integer")
        return subject, valid_until

    async def _roles(self, subject: str) -> frozenset[str]:
        if self._loader is None:
            return frozenset()
        now = self._clock()
        cached = self._cache.get(subject)
        if cached is not None and cached.expires > now:
            roles = cached.roles
        else:
            # The loader does I/O (a database query): never on the event loop.
            roles = await anyio.to_thread.run_sync(_load_roles, self._loader, subject)
            self._remember(subject, roles, self._clock())
        if roles is None:
            raise InvalidCredentials("unknown session user")
        return roles

    def _remember(self, subject: str, roles: frozenset[str] | None, now: float) -> None:
        if self._ttl <= 0:
            return
        self._cache.pop(subject, None)  # so a refreshed entry moves to the end: expiry order
        while self._cache:
            oldest = next(iter(self._cache))
            if self._cache[oldest].expires > now and len(self._cache) < self.max_cached:
                break
            del self._cache[oldest]
        self._cache[subject] = _Cached(roles, now + self._ttl)


def _load_roles(loader: RolesLoader, subject: str) -> frozenset[str] | None:
    """On a worker thread: call the loader and check what it returned."""
    roles = loader(subject)
    if roles is None:
        return None
    if isinstance(roles, str):
        # frozenset("admin") would be five one-letter roles. A loader bug: fail closed.
        raise TypeError("roles_loader returned a str; return an iterable of role names")
    result = frozenset(roles)
    if not all(isinstance(role, str) for role in result):
        raise TypeError("roles_loader returned a role that is not a str")
    return result
