"""The gateway's configuration: ``gateway.toml`` plus ``GATEWAY_*`` environment overrides.

This is the only module that reads configuration. ``load_settings`` takes the environment as a
mapping, so tests pass their own::

    settings = load_settings("gateway.toml", os.environ)

Environment variables name a key path with ``__`` between levels and are parsed as TOML values
when they can be (``GATEWAY_LEGACY__THREADS=32`` is an int, ``GATEWAY_LOGGING__FORMAT=json`` a
string). ``GATEWAY_CONFIG`` names the file. An unknown key, in the file or the environment, is an
error: nothing an operator wrote is silently ignored.
"""

from __future__ import annotations

import itertools
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

# A leaf: only value modules, never the runtime (``gateway.build`` turns settings into objects).
from gateway.context import LEGACY
from gateway.errors import ConfigError
from gateway.flags.declarations import defaults_moved, flag_defaults, route_flag
from gateway.flags.model import FlagSpec
from gateway.http_tokens import host_pattern_problem, is_method, trusted_proxy_problem
from gateway.path_template import parse_template

ENV_PREFIX = "GATEWAY_"
CONFIG_ENV = "GATEWAY_CONFIG"
DEFAULT_CONFIG = "gateway.toml"
#: Joins the problems one cross-section check finds; ``_describe`` splits them again.
PROBLEM_SEPARATOR = "\n"

_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_IMPORT_STRING = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _valid_template(value: str) -> str:
    parse_template(value)
    return value


def _valid_method(value: str) -> str:
    if not is_method(value):
        raise ValueError(f"{value!r} is not an upper-case HTTP method")
    return value


#: An HTTP method as a config key names it: ``GET``, ``PUT``.
Method = Annotated[str, AfterValidator(_valid_method)]
#: A path template: ``/api/books/{book_id:int}``.
Template = Annotated[str, AfterValidator(_valid_template)]


def _check_import_string(value: str) -> str:
    if not _IMPORT_STRING.match(value):
        raise ValueError(f"{value!r} is not an import string like 'package.module:attribute'")
    return value


class ServerSettings(_Section):
    """Defaults for ``gateway serve``; command-line flags win."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    #: With ``--workers 2`` or more (Linux): each worker process runs on one CPU of its own
    #: (``gateway.cpu_pinning``), the CPUs this process may use handed out in turn. A worker's
    #: event loop and legacy threads share one GIL, and kept on one core they do not pass it
    #: between cores. Off by default: on a host whose cores are also busy with other work, a
    #: pinned worker cannot move to an idle one. Not with ``legacy.isolation = "processes"``
    #: (the legacy workers would inherit their gateway worker's one CPU).
    pin_workers: bool = False
    #: Say which side answered in ``X-Gateway-Backend``.
    backend_header: bool = True
    request_id_header: str = "X-Request-ID"
    #: Hosts the gateway answers for, matched on the ``Host`` header whatever its port: names,
    #: addresses (``[::1]`` for IPv6), ``*.example.com`` for any subdomain, ``*`` for any host.
    #: Any other ``Host``, two of them, or none on HTTP/1.1 gets a JSON 400 before a backend
    #: runs, so absolute URLs and redirects either side builds from ``Host`` (Flask's
    #: ``url_for(_external=True)``) never point at a host the client made up.
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "[::1]")
    #: Peers (addresses or networks, ``*`` for any) whose forwarding headers are believed.
    #: Empty: believe nobody. The gateway decides this itself, the same under every ASGI server
    #: (``gateway serve`` turns uvicorn's own ``proxy_headers`` off, which would otherwise trust
    #: 127.0.0.1 by default and rewrite the client before the gateway could tell who sent it).
    #: From a trusted peer, ``X-Forwarded-For`` sets the client address (right-most untrusted
    #: entry) and ``X-Forwarded-Proto`` the scheme; ``X-Forwarded-Host`` must be an allowed host
    #: (400 otherwise) and never replaces ``Host``; ``Forwarded`` is passed on uninterpreted.
    #: From any other peer ``Forwarded``, ``X-Forwarded-*`` and ``X-Real-IP`` are **removed**
    #: before authentication and both backends: a Flask app wrapped in ``ProxyFix`` would
    #: otherwise believe a client's forged address, scheme or host.
    trusted_proxies: tuple[str, ...] = ()
    #: Roles that may use the admin API (``/_gateway/api/``), whatever the access policies say.
    admin_roles: tuple[str, ...] = ("admin",)
    #: Seconds that in-flight requests get to finish after SIGTERM.
    graceful_shutdown: Annotated[float, Field(gt=0)] = 10.0

    @field_validator("allowed_hosts")
    @classmethod
    def _valid_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError('needs at least one host (["*"] allows any)')
        problems = [p for p in map(host_pattern_problem, value) if p is not None]
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        problems = [p for p in map(trusted_proxy_problem, value) if p is not None]
        if problems:
            raise ValueError("; ".join(problems))
        return value


class LoggingSettings(_Section):
    format: Literal["console", "json"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: One canonical line per request.
    access_log: bool = True


class TracingSettings(_Section):
    """OpenTelemetry tracing (``[tracing]``; the ``otel`` extra). The SDK's own ``OTEL_*``
    variables configure the rest: service name, sampler, exporter endpoints, propagators."""

    #: ``"auto"``: on when an exporter is named (``OTEL_TRACES_EXPORTER`` or ``exporters``);
    #: ``true``: on, with the ``otlp`` exporter unless one is named; ``false``: off. Either way
    #: ``OTEL_SDK_DISABLED=true`` turns it off. ``load_settings`` turns ``"auto"`` into
    #: ``false`` when no exporter is named.
    enabled: bool | Literal["auto"] = "auto"
    #: Trace exporters by their entry-point name (``console``, ``otlp``, ``otlp_proto_http``);
    #: ``OTEL_TRACES_EXPORTER``, when set, wins.
    exporters: tuple[str, ...] = ()


#: ``host:port`` or ``[ipv6]:port``.
_LISTEN = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^:\s\[\]]+):\d{1,5}")


class MetricsSettings(_Section):
    """Prometheus metrics (``[metrics]``; ``gateway.metrics``)."""

    enabled: bool = True
    #: ``host:port`` serving the text format without authentication (for scrapers), besides
    #: the admin-only ``/_gateway/metrics``.
    listen: str | None = None
    #: prometheus-client's multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``, which
    #: ``gateway serve --workers N`` sets); not a config key.
    multiprocess_dir: Path | None = Field(default=None, exclude=True)

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str | None) -> str | None:
        if value is not None and not _LISTEN.fullmatch(value):
            raise ValueError(f"{value!r} is not host:port (e.g. '127.0.0.1:9100')")
        return value


class LegacySettings(_Section):
    #: ``module:attribute``: a Flask (or any WSGI) app, or a factory that returns one.
    app: str
    #: Keyword arguments for the factory.
    options: dict[str, Any] = Field(default_factory=dict)
    #: Size of the thread pool the WSGI app runs on (with ``isolation = "threads"``).
    threads: Annotated[int, Field(ge=1, le=1024)] = 16
    #: Request bodies up to this size (with a Content-Length) are read before the WSGI app runs,
    #: saving a thread hop per read; larger or chunked bodies stream with back-pressure.
    buffer_body_limit: Annotated[int, Field(ge=0)] = 64 * 1024
    #: When every thread is busy, a request waits this many seconds for one, then gets 503.
    queue_timeout: Annotated[float, Field(ge=0)] = 5.0
    #: Seconds a handler gets, once its thread starts, to start its response (status, headers
    #: and first body bytes); then the client gets 504. The thread cannot be killed: it runs on,
    #: its output is discarded, and it holds its place in ``threads`` until it returns. (A worker
    #: process, with ``isolation = "processes"``, is killed and replaced.)
    request_timeout: Annotated[float, Field(gt=0)] = 30.0
    #: Seconds one write to the client may take while the handler is still producing its
    #: response; then the connection is dropped and the handler's thread freed (its next chunk
    #: raises). A client that stops reading a large response cannot pin a thread for ever.
    send_timeout: Annotated[float, Field(gt=0)] = 30.0
    #: The interpreter's switch interval (``sys.setswitchinterval``), in seconds, while the
    #: gateway runs; ``None`` keeps Python's default (0.005). Views that burn CPU in pure Python
    #: hold the GIL, and the event loop (every new route) waits for it up to an interval at a
    #: time: a smaller one halved the new route's p99 under such load in ``bench/saturation.py
    #: --cpu-bound`` without costing legacy throughput, but it affects the whole process.
    switch_interval: Annotated[float, Field(gt=0, le=0.1)] | None = None
    #: Where the WSGI app runs: on ``threads`` of the gateway's own process (the default), or
    #: in ``processes`` worker processes the gateway starts, restarts and stops
    #: (``gateway.adapters.legacy_processes``). Views that burn CPU in pure Python hold the GIL
    #: of the process they run in; in their own processes they cannot slow the event loop, so
    #: the new routes keep their latency. Each request then crosses to another process (a few
    #: tens of µs more than a thread), and each process holds its own copy of the app.
    isolation: Literal["threads", "processes"] = "threads"
    #: Worker processes, with ``isolation = "processes"``; each serves one request at a time.
    processes: Annotated[int, Field(ge=1, le=256)] = 2
    #: Added to each worker process's niceness (``os.nice``), with ``isolation = "processes"``:
    #: when views burning CPU and the gateway's event loop want the same cores, the loop (every
    #: new route) runs first. Only under contention does it slow the views; 0 runs them at the
    #: gateway's own priority.
    nice: Annotated[int, Field(ge=0, le=19)] = 10
    #: How the kernel schedules the worker processes, with ``isolation = "processes"``:
    #: ``normal`` (Linux's SCHED_OTHER, at ``nice``) or ``idle`` (SCHED_IDLE, Linux only: a
    #: worker runs only when no normal task wants the core, so the event loop never waits behind
    #: a view; ``nice`` then has no effect and may not be set). With ``idle``, anything else
    #: that keeps the cores busy (another program, the other ``--workers``) holds legacy back:
    #: its requests wait, then answer 504 after ``request_timeout``.
    scheduling: Literal["normal", "idle"] = "normal"

    _check_app = field_validator("app")(_check_import_string)


class ServiceSettings(_Section):
    #: ``module:attribute``: an ASGI app (FastAPI, Starlette, ...) or a factory that returns one.
    app: str
    options: dict[str, Any] = Field(default_factory=dict)

    _check_app = field_validator("app")(_check_import_string)


AuthMethod = Literal["session", "jwt", "api-key"]


class JWTKeySettings(_Section):
    """One verification key. A token names its key with ``kid``; one without uses the first key.

    The secret (HMAC) or public key (RSA, EC, EdDSA) comes from exactly one of: ``secret_env``
    (an environment variable, falling back to ``secret`` when unset), ``secret`` (inline: demo
    configs only), ``key_file`` (a file, read at start-up).
    """

    kid: str
    #: The only algorithm this key verifies: a token's ``alg`` must match, so an HMAC token can
    #: never be checked against a public key, and ``none`` is never accepted.
    algorithm: Literal[
        "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"
    ]
    secret: SecretStr | None = None
    secret_env: str | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> JWTKeySettings:
        if self.key_file is None and self.secret is None and self.secret_env is None:
            raise ValueError("needs secret_env, secret or key_file")
        if self.key_file is not None and (self.secret is not None or self.secret_env is not None):
            raise ValueError("key_file cannot be combined with secret or secret_env")
        return self


class JWTSettings(_Section):
    keys: tuple[JWTKeySettings, ...]
    audience: str | None = None
    issuer: str | None = None
    #: Seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat``.
    leeway: Annotated[float, Field(ge=0, le=300)] = 30
    subject_claim: str = "sub"
    roles_claim: str = "roles"
    #: Claims copied into the identity (beyond subject and roles), e.g. ``["email"]``.
    keep_claims: tuple[str, ...] = ()

    @field_validator("keys")
    @classmethod
    def _distinct_kids(cls, value: tuple[JWTKeySettings, ...]) -> tuple[JWTKeySettings, ...]:
        if not value:
            raise ValueError("needs at least one key")
        kids = [key.kid for key in value]
        if len(set(kids)) != len(kids):
            raise ValueError("two keys share a kid")
        return value


class SessionSettings(_Section):
    """The legacy Flask app's own session cookie, verified with the app's own interface."""

    #: The session key that holds the user's subject (what ``POST /login`` stores).
    subject_key: str = "user"
    #: ``module:function`` taking the subject and returning its roles (an iterable of strings),
    #: or ``None`` when that user no longer exists (the session is then refused). Called on a
    #: worker thread inside the legacy app's app context; results are cached briefly. Without
    #: a loader, session users have no roles.
    roles_loader: str | None = None
    roles_cache_seconds: Annotated[float, Field(ge=0)] = 30

    _check_loader = field_validator("roles_loader")(
        lambda value: value if value is None else _check_import_string(value)
    )


class APIKeySettings(_Section):
    name: str
    #: Hex SHA-256 of the key; the key itself never appears in config.
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    roles: tuple[str, ...] = ()


class APIKeysSettings(_Section):
    header: str = "X-API-Key"
    keys: tuple[APIKeySettings, ...] = ()

    @field_validator("keys")
    @classmethod
    def _distinct_names(cls, value: tuple[APIKeySettings, ...]) -> tuple[APIKeySettings, ...]:
        names = [key.name for key in value]
        if len(set(names)) != len(names):
            raise ValueError("two keys share a name")
        return value


class PolicySettings(_Section):
    """Who may call a path. ``access`` is ``public`` or ``authenticated``; ``roles`` (any of)
    implies ``authenticated``."""

    path: Template
    #: Empty: every method.
    methods: tuple[Method, ...] = ()
    access: Literal["public", "authenticated"] | None = None
    roles: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _access_or_roles(self) -> PolicySettings:
        if (self.access is None) == (not self.roles):
            raise ValueError("give exactly one of access or roles")
        return self


class AuthSettings(_Section):
    #: Backends, in order of precedence: when two valid credentials name different users, the
    #: first backend's user is the request's user.
    order: tuple[AuthMethod, ...] = ()
    #: For paths no policy names.
    default_access: Literal["public", "authenticated"] = "public"
    policies: tuple[PolicySettings, ...] = ()
    #: Request headers a client may never send: a backend could mistake them for identity.
    strip_headers: tuple[str, ...] = (
        "x-user",
        "x-user-id",
        "x-user-roles",
        "x-remote-user",
        "remote-user",
        "x-forwarded-user",
        "x-auth-request-user",
        "x-auth-request-email",
        "x-gateway-identity",
    )
    jwt: JWTSettings | None = None
    session: SessionSettings | None = None
    api_keys: APIKeysSettings | None = None

    @model_validator(mode="after")
    def _backends_configured(self) -> AuthSettings:
        sections = {"jwt": self.jwt, "session": self.session, "api-key": self.api_keys}
        for method in self.order:
            if sections[method] is None:
                section = "api_keys" if method == "api-key" else method
                raise ValueError(f"order lists {method!r} but there is no [auth.{section}]")
        if len(set(self.order)) != len(self.order):
            raise ValueError("order lists a backend twice")
        return self


class FlagsSettings(_Section):
    """Route-level flags: where their live state is kept and who may steer them per request."""

    #: ``file`` (all workers on one host), ``redis`` (several hosts), ``memory`` (one process,
    #: changes only through the admin API; tests and experiments).
    store: Literal["file", "redis", "memory"] = "file"
    #: For the file store; relative to the config file's folder.
    file: Path = Path("var/flags.json")
    #: For the redis store. A password belongs in ``GATEWAY_FLAGS__REDIS_URL``, not in the file.
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_key: str = "gateway:flags"
    #: A request header that forces a side (``legacy`` or ``new``) for QA...
    override_header: str = "X-Gateway-Override"
    #: ...honoured only for identities holding one of these roles; ignored (and logged) otherwise.
    override_roles: tuple[str, ...] = ("qa",)
    #: The stickiness key for anonymous callers: their address, or none (always legacy).
    anonymous_key: Literal["client-address", "none"] = "client-address"
    #: ``module:attribute``: an OpenFeature provider (or a factory returning one) that decides
    #: flagged routes instead of the gateway's own modes; the kill switch and QA override
    #: still apply. See ``gateway.flags.openfeature``.
    openfeature_provider: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_defaults(cls, data: Any) -> Any:
        # Flags are declared on their routes now ([routes.flag]); say how, not "unknown key".
        if isinstance(data, dict) and isinstance(data.get("defaults"), dict):
            raise ValueError(defaults_moved(data["defaults"]))
        return data


class ShadowRouteSettings(_Section):
    """How a route in shadow mode is sampled and compared (``[routes.shadow]``)."""

    #: The side that answers the client; the other one is the candidate, run aside.
    primary: Literal["legacy", "new"] = "legacy"
    #: Share of eligible requests copied to the candidate, 0-1.
    sample_rate: Annotated[float, Field(ge=0, le=1)] = 1.0
    #: Share of sampled requests on which the primary is asked twice, to learn which fields
    #: differ between two primary answers (noise) so they are not counted as mismatches.
    noise_sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.1
    #: Seconds the candidate gets to answer completely; later, it counts as a candidate error.
    timeout: Annotated[float, Field(gt=0)] = 5.0
    #: Requests with a larger body (or a chunked one) are not shadowed.
    max_body: Annotated[int, Field(ge=0)] = 64 * 1024
    #: Shadow methods other than GET and HEAD too. Only for routes that change nothing.
    side_effect_free: bool = False
    #: Response headers compared (lower-case names).
    compare_headers: tuple[str, ...] = ("content-type",)
    #: JSON Pointers never compared; ``*`` matches one segment (``/books/*/updated_at``).
    ignore: tuple[str, ...] = ()
    #: JSON Pointers of arrays compared without regard to order.
    unordered: tuple[str, ...] = ()
    #: Numbers this close are equal.
    float_tolerance: Annotated[float, Field(ge=0)] = 0.0

    @field_validator("ignore", "unordered")
    @classmethod
    def _pointers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pointer in value:
            if pointer and not pointer.startswith("/"):
                raise ValueError(f"{pointer!r} is not a JSON Pointer (it must start with '/')")
        return value

    @field_validator("compare_headers")
    @classmethod
    def _lower_case(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(name.lower() for name in value)


class BreakerSettings(_Section):
    """A per-route circuit breaker (``[routes.breaker]``), kept per worker process.

    ``failures`` new-side failures (an exception, a timeout, a 5xx) within ``window`` seconds
    open it: the route goes to legacy for ``cooldown`` seconds, then one trial request goes to
    the new side and closes it again, or re-opens it.
    """

    failures: Annotated[int, Field(ge=1)] = 5
    window: Annotated[float, Field(gt=0)] = 30.0
    cooldown: Annotated[float, Field(gt=0)] = 30.0


class RecordRouteSettings(_Section):
    """Record a share of a route's real traffic as samples (``[routes.record]``).

    Samples (redacted request and response pairs) feed ``gateway parity``, the response
    models ``gateway scaffold`` writes and the merged OpenAPI document.
    """

    #: Share of the route's requests recorded, 0-1.
    sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.1
    #: Stop recording once the route's file holds this many samples.
    max_samples: Annotated[int, Field(ge=1)] = 200
    #: Request and response bodies are cut at this many bytes (and such samples not replayed).
    max_body: Annotated[int, Field(ge=0)] = 64 * 1024


class RolloutSettings(_Section):
    """How ``gateway rollout start`` moves a route's flag (``[routes.rollout]``).

    Each step holds at least ``hold`` seconds and until each side has ``min_requests``; then
    the new side is compared with legacy (error rate, latency, shadow mismatches, breakers) and
    the flag advances, or goes back to legacy at once on a significant regression.
    """

    #: Shares of users on the new side, in order; ``"shadow"`` (first only) compares answers
    #: before anyone is served by the new side. The last step must be 100: reaching it
    #: completes the rollout (the flag's mode becomes ``new``).
    steps: tuple[Annotated[int, Field(ge=1, le=100)] | Literal["shadow"], ...] = (5, 25, 50, 100)
    #: Minimum seconds per step.
    hold: Annotated[float, Field(gt=0)] = 300.0
    #: Seconds between analyses (and the lease's renewal).
    interval: Annotated[float, Field(gt=0)] = 10.0
    #: Requests each side needs in a step before it is judged ("not enough data" until then).
    min_requests: Annotated[int, Field(ge=1)] = 100
    #: Significance level of the statistical tests.
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.01
    #: Error-rate increase tolerated (absolute: 0.01 is one percentage point).
    max_error_rate_increase: Annotated[float, Field(ge=0, le=1)] = 0.01
    #: New-side median latency tolerated, as a multiple of legacy's.
    max_latency_ratio: Annotated[float, Field(ge=1)] = 1.5
    #: Shadow mismatch rate tolerated in a shadow step.
    max_mismatch_rate: Annotated[float, Field(ge=0, le=1)] = 0.01

    @field_validator("steps")
    @classmethod
    def _valid_steps(cls, value: tuple[int | str, ...]) -> tuple[int | str, ...]:
        if not value or value[-1] != 100:
            raise ValueError("the last step must be 100 (the rollout completes there)")
        if "shadow" in value[1:]:
            raise ValueError("'shadow' can only be the first step")
        shares = [step for step in value if isinstance(step, int)]
        if any(b <= a for a, b in itertools.pairwise(shares)):
            raise ValueError("percentages must increase from step to step")
        return value


class RecordSettings(_Section):
    """Where recorded samples are kept (``[record]``): one JSON Lines file per route and method."""

    #: Relative to the config file's folder.
    dir: Path = Path("var/samples")


class ShadowSettings(_Section):
    """Limits shared by every shadowed route (``[shadow]``)."""

    #: Candidate requests running at once, over all routes; past it samples are skipped and
    #: counted, never queued.
    max_concurrent: Annotated[int, Field(ge=1)] = 16
    #: Mismatches kept (per worker) for the report.
    recent_mismatches: Annotated[int, Field(ge=0, le=10_000)] = 100
    #: Response bytes kept for comparison; longer bodies compare by digest.
    max_compare_body: Annotated[int, Field(ge=0)] = 1024 * 1024


class RetiredSettings(_Section):
    """The legacy view a route replaced, after ``gateway retire`` (``[routes.retired]``).

    The service serves the route alone; the Flask endpoint stays buildable, so the legacy
    app's ``url_for`` keeps working once its view is deleted (``gateway.flask_support``).
    """

    #: The Flask endpoint: ``admin.list_users``.
    endpoint: str
    #: Its Werkzeug rule: ``/admin/users``.
    rule: str


class RouteSettings(_Section):
    #: A path template: ``/api/books/{book_id:int}``.
    path: Template
    methods: tuple[Method, ...]
    #: ``"legacy"`` or the name of a service.
    backend: str
    #: The flag that decides, per request, whether ``backend`` or the legacy app serves the
    #: route: a ``[routes.flag]`` table declares it (``name`` plus the ``FlagSpec`` keys), a
    #: string names a flag another route declares (``gateway.flags.declarations``). After
    #: validation, the name (a ``FlagName``). No flag: ``backend`` always serves it.
    flag: str | None = None
    #: Seconds the new side gets to start its answer; later counts as a failure (504, or
    #: legacy's answer with ``fallback``).
    timeout: Annotated[float, Field(gt=0)] | None = None
    #: When the new side raises, times out or answers 5xx before sending a byte, replay an
    #: idempotent request to legacy and answer with legacy's response.
    fallback: bool = False
    #: Largest request body kept for a fallback replay; larger bodies are not replayed.
    fallback_max_body: Annotated[int, Field(ge=0)] = 64 * 1024
    breaker: BreakerSettings | None = None
    #: Comparison settings for when the route's flag is in ``shadow`` mode.
    shadow: ShadowRouteSettings | None = None
    #: Record a share of the route's traffic as samples (``gateway parity``).
    record: RecordRouteSettings | None = None
    #: How ``gateway rollout start`` moves the route's flag (defaults when absent).
    rollout: RolloutSettings | None = None
    #: Set by ``gateway retire``: the legacy view is gone, the service serves the route alone.
    retired: RetiredSettings | None = None

    _flag = field_validator("flag", mode="wrap")(route_flag)

    @field_validator("methods")
    @classmethod
    def _valid_methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("needs at least one method")
        if len(set(value)) != len(value):
            raise ValueError("lists a method twice")
        return value


class BodyLimitSettings(_Section):
    """A route's own body limits (``[[limits.routes]]``); what it leaves out, ``[limits]`` sets."""

    #: A path template, matched on the canonical path like ``[[auth.policies]]``.
    path: Template
    #: Empty: every method.
    methods: tuple[Method, ...] = ()
    max_body_size: Annotated[int, Field(ge=0)] | None = None
    body_timeout: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _something_set(self) -> BodyLimitSettings:
        if self.max_body_size is None and self.body_timeout is None:
            raise ValueError("give max_body_size, body_timeout or both")
        return self


class LimitsSettings(_Section):
    """Size and time limits on requests (``[limits]``).

    The head limits are enforced by the HTTP protocol ``gateway serve`` runs
    (``gateway.http_protocol``; another ASGI server applies its own); the body limits by the
    gateway itself (``gateway.middleware.limits``), under any server.
    """

    #: Bytes of request line and headers; more gets 431 and the connection is closed.
    max_head_size: Annotated[int, Field(ge=1024)] = 32 * 1024
    #: Seconds for a whole request head to arrive (from the connection's start, or from its
    #: first byte on a kept-alive connection); then 408 and the connection is closed.
    head_timeout: Annotated[float, Field(gt=0)] = 10.0
    #: Bytes of request body, counted as they arrive (a ``Content-Length`` over it gets 413 at
    #: once; a body that grows past it gets 413, or an aborted response if one had started).
    max_body_size: Annotated[int, Field(ge=0)] = 10 * 1024 * 1024
    #: Seconds for the whole body to arrive from the backend's first read; then 408.
    body_timeout: Annotated[float, Field(gt=0)] = 60.0
    #: Per-route overrides, e.g. a larger ``max_body_size`` for an upload route.
    routes: tuple[BodyLimitSettings, ...] = ()
    #: Fields (and files) a form sent to the legacy app may have. The gateway counts those of
    #: a url-encoded body itself (Werkzeug does not limit them); a Flask app also gets it as its
    #: ``MAX_FORM_PARTS`` for multipart forms. More gets 413. Unset: a Flask app's own
    #: ``MAX_FORM_PARTS`` (Flask's default: 1000); 1000 for another WSGI app.
    max_form_parts: Annotated[int, Field(ge=1)] | None = None
    #: Bytes of form fields held in memory: a url-encoded body larger than this gets 413 from
    #: the gateway; a Flask app also gets it as its ``MAX_FORM_MEMORY_SIZE`` (multipart).
    #: Unset: a Flask app's own (Flask's default: 500 kB); 500 kB for another WSGI app.
    max_form_memory_size: Annotated[int, Field(ge=1)] | None = None


class Settings(_Section):
    #: Where the settings came from, for messages; not a config key.
    source: str = Field(default="<defaults>", exclude=True)
    server: ServerSettings = ServerSettings()
    logging: LoggingSettings = LoggingSettings()
    legacy: LegacySettings
    services: dict[str, ServiceSettings] = Field(default_factory=dict)
    routes: tuple[RouteSettings, ...] = ()
    auth: AuthSettings = AuthSettings()
    flags: FlagsSettings = FlagsSettings()
    shadow: ShadowSettings = ShadowSettings()
    limits: LimitsSettings = LimitsSettings()
    tracing: TracingSettings = TracingSettings()
    record: RecordSettings = RecordSettings()
    metrics: MetricsSettings = MetricsSettings()

    @field_validator("services")
    @classmethod
    def _valid_service_names(cls, value: dict[str, ServiceSettings]) -> dict[str, ServiceSettings]:
        for name in value:
            if name == LEGACY or not _SERVICE_NAME.match(name):
                raise ValueError(
                    f"service name {name!r} must be lower-case letters, digits, '-' or '_' "
                    f"and not {LEGACY!r}"
                )
        return value

    @model_validator(mode="after")
    def _legacy_isolation_keys(self) -> Settings:
        # A key that does nothing in the chosen mode is a mistake worth naming: an operator who
        # sets `processes = 8` and forgets `isolation` would otherwise run on threads unawares.
        # (`threads` may stay set with processes: configs carry it, and switching isolation
        # with GATEWAY_LEGACY__ISOLATION alone must work.)
        legacy = self.legacy
        for key in ("processes", "nice", "scheduling"):
            if legacy.isolation == "threads" and key in legacy.model_fields_set:
                raise ValueError(f'legacy.{key}: applies only with isolation = "processes"')
        if self.server.pin_workers:
            if legacy.isolation == "processes":
                raise ValueError(
                    'server.pin_workers: not with legacy.isolation = "processes" (its worker '
                    "processes would share their gateway worker's one CPU)"
                )
            if not hasattr(os, "sched_setaffinity"):
                raise ValueError("server.pin_workers: needs Linux (sched_setaffinity)")
        if legacy.scheduling == "idle":
            if "nice" in legacy.model_fields_set:
                raise ValueError('legacy.nice: has no effect with scheduling = "idle"')
            if not hasattr(os, "SCHED_IDLE"):
                raise ValueError('legacy.scheduling: "idle" needs Linux (SCHED_IDLE)')
        return self

    @model_validator(mode="after")
    def _routes_name_known_backends(self) -> Settings:
        known = [LEGACY, *self.services]
        problems = []
        for index, route in enumerate(self.routes):
            if route.backend not in known:
                problems.append(
                    f"routes[{index}].backend: unknown backend {route.backend!r} "
                    f"(known: {', '.join(known)})"
                )
            if route.flag is not None and route.backend == LEGACY:
                problems.append(
                    f"routes[{index}].flag: a flagged route's backend must be a service "
                    "(the flag chooses between it and legacy)"
                )
            if route.backend == LEGACY:
                for key in ("timeout", "fallback", "breaker", "shadow"):
                    if getattr(route, key) not in (None, False):
                        problems.append(
                            f"routes[{index}].{key}: only for a route whose backend is a "
                            "service (legacy has nothing to fall back to)"
                        )
            if route.rollout is not None and route.flag is None:
                problems.append(f"routes[{index}].rollout: needs a flag (a rollout moves it)")
            if route.retired is not None and (
                route.flag is not None or route.fallback or route.backend == LEGACY
            ):
                problems.append(
                    f"routes[{index}].retired: a retired route is served by its service alone: "
                    "no flag, no fallback (its legacy view is gone)"
                )
            if route.shadow is not None and route.flag is None:
                problems.append(
                    f"routes[{index}].shadow: needs a flag (shadowing starts when the flag's "
                    "mode is 'shadow')"
                )
        problems.extend(flag_defaults([route.flag for route in self.routes])[1])
        if problems:
            raise ValueError(PROBLEM_SEPARATOR.join(problems))
        return self

    def flag_defaults(self) -> dict[str, FlagSpec]:
        """Each flag its routes declare (``[routes.flag]``): its state until the flag store
        says otherwise, and whenever the store is unreachable before its first read."""
        return flag_defaults([route.flag for route in self.routes])[0]


def load_settings(path: str | Path | None, environ: Mapping[str, str]) -> Settings:
    """Read the config file and apply ``GATEWAY_*`` overrides; raise ``ConfigError`` on mistakes."""
    config_path = Path(path or environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    source = str(config_path)
    try:
        data: dict[str, Any] = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{source}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: not valid TOML: {exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{source}: not UTF-8 text"]) from None

    origins: dict[tuple[str, ...], str] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        keys = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if not all(keys):
            raise ConfigError([f"environment {name}: empty key between '__' separators"])
        _set_path(data, keys, _parse_env_value(raw), name)
        origins[keys] = name

    try:
        settings = Settings.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, origins)) from None
    settings = _resolve_tracing(_resolve_secrets(settings, environ), environ)
    # prometheus-client reads the same variable when it is imported: the gateway must agree.
    directory = environ.get("PROMETHEUS_MULTIPROC_DIR")
    update = {"multiprocess_dir": Path(directory) if directory else None}
    metrics = settings.metrics.model_copy(update=update)
    return settings.model_copy(update={"metrics": metrics})


def _resolve_tracing(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """Apply the OpenTelemetry variables that decide whether the gateway traces, as the SDK
    reads them (``opentelemetry.sdk._configuration``): ``OTEL_SDK_DISABLED``, and
    ``OTEL_TRACES_EXPORTER`` (comma-separated; ``none`` for no exporter). ``otlp`` means OTLP
    over HTTP (the specification's default protocol, and the one the ``otel`` extra installs)
    unless ``OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL`` says ``grpc``."""
    tracing = settings.tracing
    exporters = tracing.exporters
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if named:
        exporters = tuple(n.strip() for n in named.split(",") if n.strip() not in ("", "none"))
    enabled = tracing.enabled
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        enabled = False
    elif enabled == "auto" and not exporters:
        enabled = False  # "auto" stays "auto" when on: the extra missing is then no error
    elif enabled and not exporters and named.lower() != "none":
        exporters = ("otlp",)
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", ""
    )
    otlp = "otlp_proto_grpc" if protocol.strip() == "grpc" else "otlp_proto_http"
    exporters = tuple(otlp if name == "otlp" else name for name in exporters)
    update = {"enabled": enabled, "exporters": exporters if enabled else ()}
    return settings.model_copy(update={"tracing": tracing.model_copy(update=update)})


def _resolve_secrets(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """Fill each key's ``secret`` from the variable its ``secret_env`` names, when set, and
    resolve relative paths (key files, the flag file) against the config file's folder."""
    base = Path(settings.source).parent
    if not settings.flags.file.is_absolute():
        flags = settings.flags.model_copy(update={"file": base / settings.flags.file})
        settings = settings.model_copy(update={"flags": flags})
    if not settings.record.dir.is_absolute():
        record = settings.record.model_copy(update={"dir": base / settings.record.dir})
        settings = settings.model_copy(update={"record": record})
    jwt = settings.auth.jwt
    if jwt is None:
        return settings
    keys = []
    for index, key in enumerate(jwt.keys):
        if key.key_file is not None and not key.key_file.is_absolute():
            # Relative to the config file, like every other path an operator writes there.
            key = key.model_copy(update={"key_file": base / key.key_file})
        if key.secret_env is not None:
            value = environ.get(key.secret_env)
            if value:
                key = key.model_copy(update={"secret": SecretStr(value)})
            elif key.secret is None:
                raise ConfigError.at(
                    settings.source,
                    f"auth.jwt.keys[{index}].secret_env",
                    f"environment variable {key.secret_env} is not set",
                )
        keys.append(key)
    auth = settings.auth.model_copy(update={"jwt": jwt.model_copy(update={"keys": tuple(keys)})})
    return settings.model_copy(update={"auth": auth})


def _set_path(data: dict[str, Any], keys: tuple[str, ...], value: Any, name: str) -> None:
    node = data
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            where = ".".join(keys[: depth + 1])
            raise ConfigError([f"environment {name}: {where} is not a table"])
        node = child
    node[keys[-1]] = value


def _parse_env_value(raw: str) -> Any:
    """``32`` -> 32, ``true`` -> True, ``["GET"]`` -> ["GET"]; anything else stays a string."""
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw


def _describe(
    exc: ValidationError, source: str, origins: Mapping[tuple[str, ...], str]
) -> list[str]:
    problems = []
    for error in exc.errors():
        location = tuple(str(part) for part in error["loc"])
        key = _dotted(location)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required key is missing"
        if "input" in error and error["type"] not in ("missing", "extra_forbidden"):
            shown = repr(error["input"])
            if len(shown) <= 60 and not isinstance(error["input"], dict):
                message = f"{message} (got {shown})"
        if key:
            problems.append(f"{_where(location, source, origins)}: {key}: {message}")
        else:
            # A whole-file check reports several problems at once, one per line, each starting
            # with the key it is about: named where that key was set.
            for line in message.split(PROBLEM_SEPARATOR):
                named = _undotted(line.split(": ", 1)[0]) if ": " in line else ()
                problems.append(f"{_where(named, source, origins)}: {line}")
    return problems


def _where(location: tuple[str, ...], source: str, origins: Mapping[tuple[str, ...], str]) -> str:
    """The config file, or the ``GATEWAY_*`` variable that set the key at ``location``."""
    origin = next((env for keys, env in origins.items() if location[: len(keys)] == keys), None)
    return f"environment {origin}" if origin else source


def _undotted(key: str) -> tuple[str, ...]:
    """``routes[2].backend`` as a location: ``("routes", "2", "backend")``."""
    return tuple(part for part in re.split(r"[.\[\]]", key) if part)


def _dotted(location: tuple[str, ...]) -> str:
    out = ""
    for part in location:
        if part.isdigit():
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out
