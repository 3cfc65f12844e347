"""The ``gateway`` command: ``serve``, ``routes`` and ``check``.

::

    gateway serve                          # the demo on http://127.0.0.1:8000
    gateway serve --config prod.toml --host 0.0.0.0 --workers 4
    gateway routes                         # who serves what, as a table
    gateway check                          # validate config and routes, exit non-zero on problems

Configuration errors print one line per problem (file, key, problem) and exit with status 2;
an app or service that fails to build exits with status 1. Neither prints a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.app import GatewayApp, create_app
from gateway.errors import ConfigError, StartupError
from gateway.settings import CONFIG_ENV, DEFAULT_CONFIG, Settings, load_settings

EXIT_CONFIG = 2
EXIT_STARTUP = 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
        return result
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"gateway: config error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except StartupError as exc:
        print(f"gateway: start-up error: {exc}", file=sys.stderr)
        return EXIT_STARTUP


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Serve a Flask app and new FastAPI services on the same URLs, route by route.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.add_argument(
            "--config",
            "-c",
            metavar="PATH",
            help=f"config file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG})",
        )
        return command

    serve = add("serve", "run the gateway with uvicorn")
    serve.add_argument("--host", help="bind address (default: server.host)")
    serve.add_argument("--port", type=int, help="bind port (default: server.port)")
    serve.add_argument("--workers", type=int, help="worker processes (default: server.workers)")
    serve.add_argument(
        "--reload", action="store_true", help="restart on code changes (development)"
    )
    serve.set_defaults(handler=_serve)

    routes = add("routes", "print every Flask rule and service route and who serves it")
    routes.add_argument("--json", action="store_true", help="print JSON instead of a table")
    routes.set_defaults(handler=_routes)

    check = add("check", "validate the config and that every route's service implements it")
    check.set_defaults(handler=_check)
    return parser


def _load(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, os.environ)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = _load(args)
    server = settings.server
    workers = args.workers or server.workers
    # Worker processes and the reloader import the app again: they find the config here.
    os.environ[CONFIG_ENV] = str(Path(settings.source).resolve())
    app: GatewayApp | str
    if workers == 1 and not args.reload:
        app = create_app(settings)
    else:
        # Build once in this process so a broken config fails here, before any worker starts.
        create_app(settings)
        app = "gateway.asgi:app"
    uvicorn.run(
        app,
        host=args.host or server.host,
        port=args.port if args.port is not None else server.port,
        workers=workers if not args.reload else None,
        reload=args.reload,
        lifespan="on",
        log_config=None,
        access_log=False,
        proxy_headers=bool(server.trusted_proxies),
        forwarded_allow_ips=list(server.trusted_proxies) or None,
        timeout_graceful_shutdown=int(server.graceful_shutdown),
    )
    return 0


def _routes(args: argparse.Namespace) -> int:
    gateway = create_app(_load(args), log_stream=sys.stderr)
    rows = gateway.inventory.rows
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
        return 0
    table = [("PATH", "METHODS", "SERVED BY", "STATUS", "LEGACY ENDPOINT", "SERVICES")]
    for row in rows:
        table.append(
            (
                row.path,
                ",".join(row.methods),
                row.served_by or "-",
                row.status,
                row.legacy_endpoint or "-",
                ",".join(row.services) or "-",
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    for line in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
    return 0


def _check(args: argparse.Namespace) -> int:
    settings = _load(args)
    gateway = create_app(settings, log_stream=sys.stderr)
    migrated = sum(1 for route in settings.routes if route.backend != "legacy")
    legacy_rules = len(gateway.inventory.legacy_routes)
    print(
        f"{settings.source}: ok: {len(settings.routes)} routes ({migrated} to services), "
        f"{len(settings.services)} services, {legacy_rules} legacy rules"
    )
    for name in gateway.inventory.unchecked_services():
        print(
            f"{settings.source}: note: service {name!r} does not list its routes "
            "(not a Starlette/FastAPI app), so its routes were not verified"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
