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

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.errors import ConfigError
from gateway.path_template import parse_template

ENV_PREFIX = "GATEWAY_"
CONFIG_ENV = "GATEWAY_CONFIG"
DEFAULT_CONFIG = "gateway.toml"
LEGACY = "legacy"

_METHOD = re.compile(r"^[A-Z]+$")
_SERVICE_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
_IMPORT_STRING = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_import_string(value: str) -> str:
    if not _IMPORT_STRING.match(value):
        raise ValueError(f"{value!r} is not an import string like 'package.module:attribute'")
    return value


class ServerSettings(_Section):
    """Defaults for ``gateway serve``; command-line flags win."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    #: Say which side answered in ``X-Gateway-Backend``.
    backend_header: bool = True
    request_id_header: str = "X-Request-ID"
    #: Addresses whose ``X-Forwarded-*`` headers are believed. Empty: believe nobody
    #: (uvicorn would otherwise trust 127.0.0.1 by default).
    trusted_proxies: tuple[str, ...] = ()
    #: Seconds that in-flight requests get to finish after SIGTERM.
    graceful_shutdown: Annotated[float, Field(gt=0)] = 10.0


class LoggingSettings(_Section):
    format: Literal["console", "json"] = "console"
    level: Literal["debug", "info", "warning", "error"] = "info"
    #: One canonical line per request.
    access_log: bool = True


class LegacySettings(_Section):
    #: ``module:attribute``: a Flask (or any WSGI) app, or a factory that returns one.
    app: str
    #: Keyword arguments for the factory.
    options: dict[str, Any] = Field(default_factory=dict)
    #: Size of the thread pool the WSGI app runs on.
    threads: Annotated[int, Field(ge=1, le=1024)] = 16
    #: Request bodies up to this size (with a Content-Length) are read before the WSGI app runs,
    #: saving a thread hop per read; larger or chunked bodies stream with back-pressure.
    buffer_body_limit: Annotated[int, Field(ge=0)] = 64 * 1024
    #: When every thread is busy, a request waits this many seconds for one, then gets 503.
    queue_timeout: Annotated[float, Field(ge=0)] = 5.0

    _check_app = field_validator("app")(_check_import_string)


class ServiceSettings(_Section):
    #: ``module:attribute``: an ASGI app (FastAPI, Starlette, ...) or a factory that returns one.
    app: str
    options: dict[str, Any] = Field(default_factory=dict)

    _check_app = field_validator("app")(_check_import_string)


class RouteSettings(_Section):
    #: A path template: ``/api/books/{book_id:int}``.
    path: str
    methods: tuple[str, ...]
    #: ``"legacy"`` or the name of a service.
    backend: str

    @field_validator("path")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        parse_template(value)
        return value

    @field_validator("methods")
    @classmethod
    def _valid_methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("needs at least one method")
        for method in value:
            if not _METHOD.match(method):
                raise ValueError(f"{method!r} is not an upper-case HTTP method")
        if len(set(value)) != len(value):
            raise ValueError("lists a method twice")
        return value


class Settings(_Section):
    #: Where the settings came from, for messages; not a config key.
    source: str = Field(default="<defaults>", exclude=True)
    server: ServerSettings = ServerSettings()
    logging: LoggingSettings = LoggingSettings()
    legacy: LegacySettings
    services: dict[str, ServiceSettings] = Field(default_factory=dict)
    routes: tuple[RouteSettings, ...] = ()

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
    def _routes_name_known_backends(self) -> Settings:
        known = [LEGACY, *self.services]
        problems = []
        for index, route in enumerate(self.routes):
            if route.backend not in known:
                problems.append(
                    f"routes[{index}].backend: unknown backend {route.backend!r} "
                    f"(known: {', '.join(known)})"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self


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
        return Settings.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, origins)) from None


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
        origin = next((env for keys, env in origins.items() if location[: len(keys)] == keys), None)
        where = f"environment {origin}" if origin else source
        if key:
            problems.append(f"{where}: {key}: {message}")
        else:
            problems.append(f"{where}: {message}")
    return problems


def _dotted(location: tuple[str, ...]) -> str:
    out = ""
    for part in location:
        if part.isdigit():
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out
