"""Build the authentication pieces from ``[auth]``: backends in precedence order, the policy
table, and the Flask session codec the shared-session bridge uses.

::

    auth = build_auth(settings, flask_app)
    app = AuthMiddleware(app, backends=auth.backends, policies=auth.policies, ...)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.auth import AuthBackend
from gateway.auth.api_keys import APIKeyBackend
from gateway.auth.flask_session import (
    FlaskSessionBackend,
    FlaskSessionCodec,
    SessionCodecError,
    with_app_context,
)
from gateway.auth.jwt import JWTBackend
from gateway.auth.policy import PolicyTable, build_policies
from gateway.errors import ConfigError
from gateway.loading import import_object
from gateway.routes import DuplicateRouteError
from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class Auth:
    backends: tuple[AuthBackend, ...]
    policies: PolicyTable
    #: The legacy app's session codec, when it is a Flask app with cookie sessions.
    codec: FlaskSessionCodec | None


def build_auth(settings: Settings, wsgi_app: Any) -> Auth:
    auth = settings.auth
    source = settings.source
    try:
        policies = build_policies(
            ((p.path, p.methods, p.access, p.roles) for p in auth.policies), auth.default_access
        )
    except DuplicateRouteError as exc:
        raise ConfigError.at(source, "auth.policies", str(exc)) from None

    codec = _session_codec(wsgi_app, source, required="session" in auth.order)
    backends: list[AuthBackend] = []
    for method in auth.order:
        if method == "jwt" and auth.jwt is not None:
            backends.append(JWTBackend(auth.jwt, source=source))
        elif method == "api-key" and auth.api_keys is not None:
            backends.append(APIKeyBackend(auth.api_keys, source=source))
        elif method == "session" and auth.session is not None and codec is not None:
            loader = None
            if auth.session.roles_loader is not None:
                function = import_object(
                    auth.session.roles_loader, source, "auth.session.roles_loader"
                )
                loader = with_app_context(wsgi_app, function)
            backends.append(FlaskSessionBackend(codec, auth.session, loader))
    return Auth(tuple(backends), policies, codec)


def _session_codec(wsgi_app: Any, source: str, *, required: bool) -> FlaskSessionCodec | None:
    if not hasattr(wsgi_app, "session_interface"):
        if required:
            raise ConfigError.at(
                source, "auth.order", "'session' needs the legacy app to be a Flask app"
            )
        return None
    try:
        return FlaskSessionCodec(wsgi_app)
    except SessionCodecError as exc:
        if required:
            raise ConfigError.at(source, "auth.session", str(exc)) from None
        return None
