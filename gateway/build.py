"""Settings in, runtime objects out: the one module that reads ``Settings`` to build things.

Every runtime module takes plain values (numbers, strings, other objects); this module is where
``gateway.toml``'s sections become those values, so a config key is read in one place and a
mistake found while building names its file and key (``ConfigError``). ``gateway.app.create_app``
calls these in the order the gateway runs::

    wsgi_app, legacy = build_legacy(settings)
    auth = build_auth(settings, wsgi_app)
    flags = build_flags(settings, build_storage(settings))   # flags and reports share the storage
    services = build_services(settings, auth.codec, wsgi_app)  # wsgi_app: for gateway.parity
    plans = build_route_plans(settings, services, legacy, runner)
    table = build_route_table(settings, plans)
    stack = build_middleware(settings, auth)       # in the order a request passes through it
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from flask import Flask
from starlette.middleware import Middleware
from starlette.types import ASGIApp

from gateway.adapters.legacy import LegacyApp
from gateway.adapters.services import Service
from gateway.auth import AuthBackend
from gateway.auth.api_keys import APIKeyBackend
from gateway.auth.flask_session import (
    FlaskSessionBackend,
    FlaskSessionCodec,
    SessionCodecError,
    with_app_context,
)
from gateway.auth.policy import PolicyTable, build_policies
from gateway.context import LEGACY
from gateway.errors import ConfigError, DuplicateRouteError
from gateway.flags.openfeature import OpenFeatureEvaluator
from gateway.flags.runtime import FlagRuntime
from gateway.flags.stores import FlagStore
from gateway.flask_support import add_retired_rules
from gateway.loading import import_object, load_app
from gateway.metrics import Metrics
from gateway.middleware.auth import Authenticator
from gateway.middleware.checks import RequestChecksMiddleware
from gateway.middleware.limits import BodyLimit, BodyLimits
from gateway.middleware.request_context import Observer, RequestContextMiddleware
from gateway.middleware.request_head import RequestHead
from gateway.recording.hook import RecordingHook, recorded_routes
from gateway.recording.redact import Redactor
from gateway.recording.writer import SampleWriter
from gateway.resilience import Breaker, GuardedService
from gateway.route_plan import RoutePlan, route_label
from gateway.routes import RouteTable
from gateway.settings import (
    APIKeysSettings,
    JWTKeySettings,
    JWTSettings,
    RouteSettings,
    Settings,
    ShadowRouteSettings,
)
from gateway.shadow.compare import CompareRules
from gateway.shadow.results import ShadowResults
from gateway.shadow.runner import ShadowPlan, ShadowRunner
from gateway.storage import Storage
from gateway.storage.file import FileStorage
from gateway.storage.memory import MemoryStorage

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from gateway.auth.jwt import JWTBackend
    from gateway.tracing import Tracing

# -- the two sides ------------------------------------------------------------------------------


def build_legacy(settings: Settings) -> tuple[Any, LegacyApp]:
    """The configured WSGI app, and the adapter that serves it (on threads or in processes)."""
    legacy = settings.legacy
    wsgi_app, max_form_parts, max_form_memory_size = load_legacy_app(settings)
    options: dict[str, Any] = {
        "buffer_body_limit": legacy.buffer_body_limit,
        "queue_timeout": legacy.queue_timeout,
        "request_timeout": legacy.request_timeout,
        "send_timeout": legacy.send_timeout,
        "max_form_parts": max_form_parts,
        "max_form_memory_size": max_form_memory_size,
    }
    if legacy.isolation == "processes":
        from gateway.adapters.legacy_processes import ProcessLegacyApp

        adapter: LegacyApp = ProcessLegacyApp(
            settings, wsgi_app, processes=legacy.processes, **options
        )
    else:
        adapter = LegacyApp(
            wsgi_app, threads=legacy.threads, switch_interval=legacy.switch_interval, **options
        )
    return wsgi_app, adapter


def load_legacy_app(settings: Settings) -> tuple[Any, int | None, int | None]:
    """The configured WSGI app, ready to serve (retired routes' rules and ``[limits]``'s form
    limits applied), and the form limits the adapter enforces. The gateway calls it, and so
    does each legacy worker process (``isolation = "processes"``): every copy is the same."""
    legacy = settings.legacy
    wsgi_app = load_app(legacy.app, legacy.options, settings.source, "legacy")
    if not callable(wsgi_app):
        raise ConfigError.at(settings.source, "legacy.app", f"{legacy.app!r} is not a WSGI app")
    if isinstance(wsgi_app, Flask):
        add_retired_rules(wsgi_app, settings)  # url_for of retired views keeps building
    max_form_parts, max_form_memory_size = _form_limits(settings, wsgi_app)
    return wsgi_app, max_form_parts, max_form_memory_size


#: Flask's own defaults (``MAX_FORM_PARTS``, ``MAX_FORM_MEMORY_SIZE``), for other WSGI apps.
_FORM_LIMITS = {"MAX_FORM_PARTS": 1000, "MAX_FORM_MEMORY_SIZE": 500_000}


def _form_limits(settings: Settings, wsgi_app: Any) -> tuple[int | None, int | None]:
    """The form limits the legacy adapter enforces on url-encoded forms (Werkzeug has none for
    them): ``[limits]``'s when set, which then also become a Flask app's own ``MAX_FORM_*``
    (Werkzeug applies those to multipart forms); otherwise the Flask app's own settings, so
    nothing the app configured is overridden; Flask's defaults for another WSGI app."""
    config = getattr(wsgi_app, "config", None)
    own = config if isinstance(config, dict) else dict(_FORM_LIMITS)
    for key, value in (
        ("MAX_FORM_PARTS", settings.limits.max_form_parts),
        ("MAX_FORM_MEMORY_SIZE", settings.limits.max_form_memory_size),
    ):
        if value is not None:
            own[key] = value
    return own.get("MAX_FORM_PARTS"), own.get("MAX_FORM_MEMORY_SIZE")


def build_services(
    settings: Settings, codec: FlaskSessionCodec | None, legacy: Any = None
) -> dict[str, Service]:
    """Each ``[services.NAME]``, loaded, with the shared Flask session when there is one, and
    the legacy app the parity helpers imitate (``gateway.parity``)."""
    services: dict[str, Service] = {}
    for name, service in settings.services.items():
        key = f"services.{name}"
        app = load_app(service.app, service.options, settings.source, key)
        if not callable(app):
            raise ConfigError.at(
                settings.source, f"{key}.app", f"{service.app!r} is not an ASGI app"
            )
        services[name] = Service(name, app, bridge=codec, legacy=legacy)
    return services


# -- authentication -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Auth:
    backends: tuple[AuthBackend, ...]
    policies: PolicyTable
    #: The legacy app's session codec, when it is a Flask app with cookie sessions.
    codec: FlaskSessionCodec | None


def build_auth(settings: Settings, wsgi_app: Any) -> Auth:
    """``[auth]``: backends in precedence order, the policy table, the Flask session codec."""
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
            backends.append(build_jwt_backend(auth.jwt, source=source))
        elif method == "api-key" and auth.api_keys is not None:
            backends.append(build_api_key_backend(auth.api_keys, source=source))
        elif method == "session" and auth.session is not None and codec is not None:
            loader = None
            if auth.session.roles_loader is not None:
                function = import_object(
                    auth.session.roles_loader, source, "auth.session.roles_loader"
                )
                loader = with_app_context(wsgi_app, function)
            backends.append(
                FlaskSessionBackend(
                    codec,
                    loader,
                    subject_key=auth.session.subject_key,
                    roles_cache_seconds=auth.session.roles_cache_seconds,
                )
            )
    return Auth(tuple(backends), policies, codec)


def build_jwt_backend(settings: JWTSettings, *, source: str) -> JWTBackend:
    """``[auth.jwt]``: every key read and parsed now, so a bad one stops start-up."""
    # Imported here: PyJWT (and its cryptography) only in a worker whose config uses JWTs.
    from gateway.auth.jwt import JWTBackend, load_key

    keys = []
    for index, key in enumerate(settings.keys):
        material, where = _key_material(key, f"auth.jwt.keys[{index}]", source)
        keys.append(load_key(key.kid, key.algorithm, material, source=source, where=where))
    return JWTBackend(
        keys,
        audience=settings.audience,
        issuer=settings.issuer,
        leeway=settings.leeway,
        subject_claim=settings.subject_claim,
        roles_claim=settings.roles_claim,
        keep_claims=settings.keep_claims,
    )


def _key_material(key: JWTKeySettings, prefix: str, source: str) -> tuple[bytes, str]:
    """The key's bytes and the config key they came from."""
    if key.key_file is not None:
        where = f"{prefix}.key_file"
        return _read_key_file(key.key_file, source, where), where
    where = f"{prefix}.secret_env" if key.secret_env is not None else f"{prefix}.secret"
    # The model guarantees one source; load_settings has resolved secret_env into secret.
    if key.secret is None:
        raise ConfigError.at(source, where, "no secret (was secret_env resolved?)")
    return key.secret.get_secret_value().encode(), where


def _read_key_file(path: Path, source: str, where: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError.at(source, where, f"file not found: {path}") from None
    except OSError as exc:
        raise ConfigError.at(source, where, f"cannot read {path}: {exc.strerror}") from None
    # Secret files usually end with a newline the issuer did not sign with; PEM parsing ignores it.
    return data.removesuffix(b"\n").removesuffix(b"\r")


def build_api_key_backend(settings: APIKeysSettings, *, source: str) -> APIKeyBackend:
    """``[auth.api_keys]``; two names for one key is an error (which name would a request get?)."""
    keys: dict[str, tuple[str, frozenset[str]]] = {}
    for index, key in enumerate(settings.keys):
        if key.sha256 in keys:
            problem = f"same key as {keys[key.sha256][0]!r}"
            raise ConfigError.at(source, f"auth.api_keys.keys[{index}].sha256", problem)
        keys[key.sha256] = (key.name, frozenset(key.roles))
    return APIKeyBackend(keys, header=settings.header)


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


# -- flags and the storage they share with the worker reports -----------------------------------


def build_storage(settings: Settings) -> Storage:
    """The one backend ``[flags] store`` names, for the flag state and the worker reports alike
    (reports go where the flags are: that is what every worker and host already shares).
    Building opens nothing: a Redis client connects on first use."""
    flags = settings.flags
    if flags.store == "memory":
        return MemoryStorage()
    if flags.store == "file":
        return FileStorage(flags.file, reports=flags.file.parent / "reports")
    # Imported here: the Redis client (~15 MiB and ~65 ms per worker) only when it is used.
    from gateway.storage.redis import RedisStorage

    return RedisStorage(
        flags.redis_url, key=flags.redis_key, reports_prefix=f"{flags.redis_key}:reports:"
    )


def build_flags(settings: Settings, storage: Storage) -> FlagRuntime:
    """``[flags]``: the runtime every request reads, over ``storage`` (stopping the runtime
    closes its view of the storage), and the OpenFeature provider when one is named."""
    flags = settings.flags
    provider = None
    if flags.openfeature_provider is not None:
        key = "flags.openfeature_provider"
        provider = OpenFeatureEvaluator(
            load_app(flags.openfeature_provider, {}, settings.source, key)
        )
    return FlagRuntime(
        defaults=settings.flag_defaults(),
        store=FlagStore(storage),
        anonymous_key=flags.anonymous_key,
        override_roles=flags.override_roles,
        provider=provider,
    )


# -- routes -------------------------------------------------------------------------------------


def build_shadow_runner(settings: Settings) -> ShadowRunner:
    """``[shadow]``: the limits every shadowed route shares."""
    return ShadowRunner(
        results=ShadowResults(keep=settings.shadow.recent_mismatches),
        max_concurrent=settings.shadow.max_concurrent,
        max_compare_body=settings.shadow.max_compare_body,
    )


def build_route_plans(
    settings: Settings,
    services: Mapping[str, ASGIApp],
    legacy: ASGIApp,
    shadow_runner: ShadowRunner | None = None,
) -> list[RoutePlan]:
    """One plan per ``[[routes]]`` entry, in order: its service, guards and shadow settings."""
    return [
        build_route_plan(route, f"routes[{index}]", services, legacy, shadow_runner)
        for index, route in enumerate(settings.routes)
    ]


def build_route_plan(
    route: RouteSettings,
    config_key: str,
    services: Mapping[str, ASGIApp],
    legacy: ASGIApp,
    shadow_runner: ShadowRunner | None,
) -> RoutePlan:
    service = services.get(route.backend, legacy)
    label = route_label(route.methods, route.path)
    app, breaker = service, None
    if route.backend != LEGACY and (route.timeout or route.fallback or route.breaker):
        if route.breaker is not None:
            breaker = Breaker(
                label,
                failures=route.breaker.failures,
                window=route.breaker.window,
                cooldown=route.breaker.cooldown,
            )
        app = GuardedService(
            service,
            legacy=legacy,
            label=label,
            timeout=route.timeout,
            fallback=route.fallback,
            fallback_max_body=route.fallback_max_body,
            breaker=breaker,
        )
    shadow = None
    if route.flag is not None:
        spec = route.shadow or ShadowRouteSettings()
        shadow = ShadowPlan(
            label=label,
            primary=spec.primary,
            sample_rate=spec.sample_rate,
            noise_sample_rate=spec.noise_sample_rate,
            timeout=spec.timeout,
            max_body=spec.max_body,
            side_effect_free=spec.side_effect_free,
            rules=compare_rules(route),
        )
    return RoutePlan(
        template=route.path,
        methods=frozenset(route.methods),
        backend=route.backend,
        flag=route.flag,
        app=app,
        service=service,
        legacy=legacy,
        breaker=breaker,
        shadow=shadow,
        shadow_runner=shadow_runner,
        label=label,
        config_key=config_key,
        retired=route.retired is not None,
    )


def build_route_table(settings: Settings, plans: Sequence[RoutePlan]) -> RouteTable[RoutePlan]:
    try:
        return RouteTable(plans)
    except DuplicateRouteError as exc:
        raise ConfigError.at(settings.source, "routes", str(exc)) from None


def build_body_limits(settings: Settings) -> list[BodyLimit]:
    """``[[limits.routes]]`` as rules, each completed with ``[limits]``'s defaults."""
    limits = settings.limits
    rules = [
        BodyLimit(
            route.path,
            frozenset(route.methods),
            limits.max_body_size if route.max_body_size is None else route.max_body_size,
            limits.body_timeout if route.body_timeout is None else route.body_timeout,
        )
        for route in limits.routes
    ]
    try:
        RouteTable(rules)
    except DuplicateRouteError as exc:
        raise ConfigError.at(settings.source, "limits.routes", str(exc)) from None
    return rules


# -- the middleware stack -----------------------------------------------------------------------


def build_middleware(
    settings: Settings,
    auth: Auth,
    tracing: Tracing | None = None,
    observers: Sequence[Observer] = (),
) -> list[Middleware]:
    """The middleware, in the order a request passes through it (the dispatcher comes last)."""
    server, limits = settings.server, settings.limits
    traced = []
    if tracing is not None:
        from gateway.tracing import TracingMiddleware

        # The request's server span, current for everything further in.
        traced = [Middleware(TracingMiddleware, tracing=tracing)]
    return [
        # Canonical path (400 if ambiguous), request id, logging context, the access line.
        Middleware(
            RequestContextMiddleware,
            request_id_header=server.request_id_header,
            backend_header=server.backend_header,
            access_log=settings.logging.access_log,
            observers=observers,
        ),
        *traced,
        # One layer, three checks in turn (gateway.middleware.checks).
        Middleware(
            RequestChecksMiddleware,
            # Host, forwarding headers, method token, method overrides.
            head=RequestHead(
                allowed_hosts=server.allowed_hosts, trusted_proxies=server.trusted_proxies
            ),
            # Body size and time.
            limits=BodyLimits(
                max_body_size=limits.max_body_size,
                body_timeout=limits.body_timeout,
                routes=build_body_limits(settings),
            ),
            # Identify once, strip forged identity headers, enforce the route's access policy.
            auth=Authenticator(
                backends=auth.backends,
                policies=auth.policies,
                strip_headers=settings.auth.strip_headers,
            ),
        ),
    ]


# -- metrics and tracing ------------------------------------------------------------------------


def build_metrics(settings: Settings) -> Metrics | None:
    """``[metrics]``; ``None`` when off, so no request records anything."""
    metrics = settings.metrics
    if not metrics.enabled:
        return None
    return Metrics(multiprocess_dir=metrics.multiprocess_dir)


def build_tracing(settings: Settings, provider: TracerProvider | None = None) -> Tracing | None:
    """``[tracing]``, resolved against ``OTEL_*`` by ``load_settings``; ``None`` when off, so no
    request calls into OpenTelemetry. On without the ``otel`` extra: an error when
    ``enabled = true`` said so, a warning when only ``OTEL_TRACES_EXPORTER`` did."""
    tracing = settings.tracing
    if tracing.enabled is False:
        return None
    try:
        from gateway.tracing import Tracing, exporter_installed
    except ImportError as exc:
        problem = f"needs the otel extra: pip install 'flask-fastapi-gateway[otel]' ({exc})"
        if tracing.enabled is True:
            raise ConfigError.at(settings.source, "tracing.enabled", problem) from None
        structlog.get_logger("gateway.tracing").warning("tracing.unavailable", problem=problem)
        return None
    if provider is None:
        for name in tracing.exporters:
            if not exporter_installed(name):
                problem = f"no trace exporter {name!r} is installed (OTEL_TRACES_EXPORTER)"
                raise ConfigError.at(settings.source, "tracing.exporters", problem)
    return Tracing(exporters=tracing.exporters, provider=provider)


# -- recording ----------------------------------------------------------------------------------


def build_sample_writer(settings: Settings) -> SampleWriter:
    """The thread that writes recorded samples (redacted), for the process's lifetime."""
    api_keys = settings.auth.api_keys
    header = None if api_keys is None else api_keys.header
    return SampleWriter(redactor=Redactor(api_key_header=header))


def build_recording(settings: Settings, writer: SampleWriter, flags: FlagRuntime) -> RecordingHook:
    """``[routes.record]`` and ``gateway record``'s requests (read from the flag store): the
    hook that feeds ``writer``, which the dispatcher asks about each configured route."""
    return RecordingHook(
        routes=recorded_routes(settings),
        writer=writer,
        recordings=lambda: flags.state.recordings,
    )


def compare_rules(route: RouteSettings) -> CompareRules:
    """How the route's two sides are compared (shadow traffic, ``gateway parity``): its
    ``[routes.shadow]`` rules, or the defaults."""
    spec = route.shadow or ShadowRouteSettings()
    return CompareRules(
        headers=spec.compare_headers,
        ignore=spec.ignore,
        unordered=spec.unordered,
        float_tolerance=spec.float_tolerance,
    )


def wrap(app: ASGIApp, middleware: Sequence[Middleware]) -> ASGIApp:
    """``middleware[0]`` outermost, as Starlette builds its stack."""
    for cls, args, kwargs in reversed(middleware):
        app = cls(app, *args, **kwargs)
    return app
