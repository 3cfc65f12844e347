"""The ``gateway`` command: ``serve``, ``routes``, ``check`` and ``flags``.

::

    gateway serve                          # the demo on http://127.0.0.1:8000
    gateway serve --config prod.toml --host 0.0.0.0 --workers 4
    gateway routes                         # who serves what, as a table
    gateway check                          # validate config and routes, exit non-zero on problems
    gateway flags set catalog-books --mode canary --percentage 10
    gateway flags kill                     # every flagged route to legacy, in every process
    gateway flags reset [NAME]             # back to the routes' [routes.flag] defaults
    gateway flags delete NAME              # a flag no route declares any more, out of the store
    gateway shadow report                  # what shadow traffic found, over every worker
    gateway record "GET /api/me" --samples 20   # record real traffic (gateway.cli_parity)
    gateway parity "GET /api/me"           # replay it against both sides, compare
    gateway status                         # migration progress of the running server
    gateway reload                         # every worker reads gateway.toml again, live
    gateway --version                      # also: python -m gateway ...

Configuration errors print one line per problem (file, key, problem) and exit with status 2;
an app or service that fails to build exits with status 1. Neither prints a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

# Only what building the parser and reading the config need: each command imports the rest when
# it runs, so `gateway --help` stays quick and the `serve --workers N` supervisor stays small.
from gateway import __version__, cli_parity, cli_reload, cli_rollout, cli_status
from gateway.cli_migrate import register as register_migration_commands
from gateway.errors import EXIT_STARTUP, ConfigError, StartupError, failure_report
from gateway.settings import CONFIG_ENV, DEFAULT_CONFIG, Settings, load_settings

if TYPE_CHECKING:
    import socket

    from gateway.app import GatewayApp
    from gateway.flags.model import FlagSpec
    from gateway.metrics import Metrics
    from gateway.reports import Report

#: What a shell reports for a command killed by SIGPIPE (128 + 13).
EXIT_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
        return result
    except (ConfigError, StartupError) as exc:
        status, lines = failure_report(exc)
        for line in lines:
            print(line, file=sys.stderr)
        return status
    except BrokenPipeError:
        # The reader left (`gateway routes | head`): stop quietly, as Unix tools do, and keep
        # Python from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Serve a Flask app and new FastAPI services on the same URLs, route by route.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return add_command(commands, name, help_text)

    serve = add("serve", "run the gateway with uvicorn")
    serve.add_argument("--host", help="bind address (default: server.host)")
    serve.add_argument("--port", type=int, help="bind port (default: server.port)")
    serve.add_argument("--workers", type=int, help="worker processes (default: server.workers)")
    serve.add_argument(
        "--reload",
        action="store_true",
        help="restart on code changes, reload the config file live when it changes (development)",
    )
    cli_reload.add_pid_file_option(serve)
    serve.set_defaults(handler=_serve)

    routes = add("routes", "print every Flask rule and service route and who serves it")
    routes.add_argument("--json", action="store_true", help="print JSON instead of a table")
    routes.set_defaults(handler=_routes)

    check = add("check", "validate the config and that every route's service implements it")
    check.set_defaults(handler=_check)

    flags = commands.add_parser(
        "flags",
        help="read and change route flags in the store the server uses",
        description="Read and change route flags in the store the server uses (file or Redis); "
        "every running gateway process applies a change within a second.",
    )
    flag_commands = flags.add_subparsers(required=True, metavar="ACTION", dest="flags_command")

    def add_flag_command(name: str, help_text: str) -> argparse.ArgumentParser:
        command = flag_commands.add_parser(name, help=help_text, description=help_text)
        command.add_argument("--config", "-c", metavar="PATH", help="config file")
        command.set_defaults(handler=_flags)
        return command

    listing = add_flag_command("list", "every flag's effective state and the kill switch")
    listing.add_argument("--json", action="store_true", help="print JSON")
    add_flag_command("get", "one flag's effective state").add_argument("name")
    setter = add_flag_command("set", "change a flag; options not given keep their value")
    setter.add_argument("name")
    setter.add_argument("--mode", choices=["legacy", "new", "canary", "shadow"])
    setter.add_argument("--percentage", type=int, metavar="0-100")
    for field in ("allow-subject", "deny-subject", "allow-role", "deny-role"):
        setter.add_argument(
            f"--{field}",
            action="append",
            metavar="VALUE",
            help=f"replace the {field.replace('-', ' ')} list (repeat for several; '' clears)",
        )
    add_flag_command(
        "delete", "remove a flag from the store (one no route declares any more)"
    ).add_argument("name")
    add_flag_command(
        "reset", "put a flag (no NAME: every declared flag) back to its config default"
    ).add_argument("name", nargs="?")
    add_flag_command("kill", "send every flagged route to legacy now")
    add_flag_command("unkill", "lift the kill switch")

    shadow = commands.add_parser(
        "shadow",
        help="read what shadow traffic found",
        description="Read what shadow traffic found, added up over every running worker.",
    )
    shadow_commands = shadow.add_subparsers(required=True, metavar="ACTION")
    report = shadow_commands.add_parser(
        "report", help="per route: matches, mismatches, errors, noise; recent mismatches"
    )
    report.add_argument("--config", "-c", metavar="PATH", help="config file")
    report.add_argument("--json", action="store_true", help="print JSON")
    report.add_argument("--recent", type=int, default=10, help="mismatches shown (default 10)")
    report.set_defaults(handler=_shadow_report)
    cli_rollout.register(commands)
    cli_parity.register(commands)
    cli_status.register(commands)
    register_migration_commands(commands)
    cli_reload.register(commands)
    return parser


def add_command(commands: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    """A subcommand that reads the config (``--config``); modules that add commands use it."""
    command: argparse.ArgumentParser = commands.add_parser(
        name, help=help_text, description=help_text
    )
    command.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        help=f"config file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG})",
    )
    return command


def _load(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, os.environ)


def _serve(args: argparse.Namespace) -> int:
    import contextlib
    from pathlib import Path

    import uvicorn

    from gateway.cpu_pinning import CpuSlots, pin_this_process
    from gateway.draining import DrainingServer
    from gateway.http_protocol import HttpProtocolFactory
    from gateway.log import configure_logging
    from gateway.metrics.listener import serving_metrics
    from gateway.reload_control import ConfigWatchingReload, pid_file_written
    from gateway.supervisor import ServedApp, StartupFailures

    settings = _load(args)
    server = settings.server
    workers = args.workers or server.workers
    host = args.host or server.host
    port = args.port if args.port is not None else server.port
    # Listen before anything is built: a busy port is one clear line, not a failure after the
    # whole app has started, buried among its info lines.
    sock = _listen(host, port)
    stack = contextlib.ExitStack()
    try:
        # Worker processes and the reloader import the app again: they find the config here.
        os.environ[CONFIG_ENV] = str(Path(settings.source).resolve())
        # SIGHUP reloads the config in every worker; `gateway reload` finds us through this.
        pid_file = stack.enter_context(pid_file_written(cli_reload.pid_file_of(args)))
        app: GatewayApp | ServedApp
        # This process's own metrics when it serves; else a listener over the workers' files.
        metrics: Metrics | None = None
        separate = True
        failures: StartupFailures | None = None
        if workers == 1 or args.reload:
            from gateway.app import create_app
            from gateway.reload_control import enable_live_reload

            pinned = server.pin_workers and not args.reload
            cpu = pin_this_process() if pinned else None
            gateway = create_app(settings)
            if server.pin_workers:
                import structlog

                server_log = structlog.get_logger("gateway.server")
                if cpu is not None:
                    server_log.info("server.worker_pinned", cpu=cpu)
                else:
                    server_log.warning(
                        "server.pin_workers_ignored",
                        reason="not with --reload (a development server)",
                    )
            if args.reload:
                # Built here only to check it before the reloader starts (a development server):
                # a worker it restarts after an edit that breaks the app waits for the next edit.
                app = ServedApp(settings.source, pid_file)
            else:
                app = enable_live_reload(gateway, pid_file)
                metrics, separate = gateway.metrics, False
        else:
            # The workers build the app, and one that cannot stops them all with its reason
            # (gateway.supervisor): this process stays small and starts them at once.
            configure_logging(format=settings.logging.format, level=settings.logging.level)
            failures = StartupFailures()
            cpus = CpuSlots(workers) if server.pin_workers else None
            app = ServedApp(settings.source, pid_file, failures.queue, cpus)
        config = uvicorn.Config(
            app,
            factory=isinstance(app, ServedApp),
            host=host,
            port=port,
            workers=workers if not args.reload else None,
            reload=args.reload,
            lifespan="on",
            log_config=None,
            access_log=False,
            # The gateway applies server.trusted_proxies itself (gateway.middleware.request_head);
            # uvicorn's own proxy handling would trust 127.0.0.1 and rewrite the client first.
            proxy_headers=False,
            # httptools, deliberately (h11 costs a large share of the throughput), with the head
            # size and time limits uvicorn's httptools protocol lacks (gateway.http_protocol).
            http=HttpProtocolFactory(
                max_head_size=settings.limits.max_head_size,
                head_timeout=settings.limits.head_timeout,
            ).as_uvicorn_http(),
            timeout_graceful_shutdown=int(server.graceful_shutdown),
        )
        with (
            contextlib.suppress(KeyboardInterrupt),
            serving_metrics(settings.metrics, metrics, separate_workers=separate),
        ):
            if args.reload:
                ConfigWatchingReload(
                    config,
                    target=DrainingServer(config).run,
                    sockets=[sock],
                    config_file=Path(settings.source),
                ).run()
            elif failures is not None:
                return failures.run(config, sockets=[sock])
            else:
                runner = DrainingServer(config)
                runner.run(sockets=[sock])
                if not runner.started:
                    return EXIT_STARTUP  # the lifespan failed; its one line is in the log
                stack.close()
                _exit_now()
    finally:
        stack.close()
        sock.close()
    return 0


def _exit_now() -> NoReturn:
    """End the process with status 0 once the server has stopped.

    A legacy handler still running after the grace period (a stuck Flask view) cannot be
    killed. Its thread is a daemon (``gateway.adapters.thread_pool``), but a normal exit still
    finalises the interpreter around it and joins any non-daemon thread a library or a service
    started. Everything that matters has been shut down by the lifespan, so end now.
    """
    from gateway.log import exit_now

    exit_now(0)


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound as uvicorn binds it; ``StartupError`` when it cannot be."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        raise StartupError(f"cannot listen on {shown}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)  # worker processes serve on it too
    return sock


def _routes(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from gateway.app import create_app

    settings = _load(args)
    gateway = create_app(settings, log_stream=sys.stderr)
    rows = gateway.inventory.rows
    breakers = _breaker_states(settings, asyncio.run(_read_reports(settings)))

    def breaker(row: Any) -> str | None:
        return next(
            (breakers[(row.path, m)] for m in row.methods if (row.path, m) in breakers), None
        )

    if args.json:
        listing = [{**row.as_dict(), "breaker": breaker(row)} for row in rows]
        print(json.dumps(listing, indent=2))
        return 0
    table = [
        ("PATH", "METHODS", "SERVED BY", "FLAG", "STATUS", "BREAKER", "LEGACY ENDPOINT", "SERVICES")
    ]
    for row in rows:
        table.append(
            (
                row.path,
                ",".join(row.methods),
                row.served_by or "-",
                row.flag or "-",
                row.status,
                breaker(row) or "-",
                row.legacy_endpoint or "-",
                ",".join(row.services) or "-",
            )
        )
    _print_table(table)
    return 0


async def _read_reports(settings: Settings) -> list[Report]:
    from gateway.build import build_storage
    from gateway.reports import ReportStore

    store = ReportStore(build_storage(settings))
    try:
        return await store.read()
    except Exception as exc:  # the report is extra information: say so, and go on
        print(
            f"gateway: cannot read worker reports from {store.description}: {exc}", file=sys.stderr
        )
        return []
    finally:
        await store.close()


def _breaker_states(settings: Settings, reports: list[Report]) -> dict[tuple[str, str], str]:
    """Each guarded (path, method)'s breaker state over the live workers; ``unknown`` when no
    worker reports (none is running)."""
    from gateway.reports import combine_reports
    from gateway.route_plan import route_label

    combined = combine_reports(reports)["breakers"]
    states: dict[tuple[str, str], str] = {}
    for route in settings.routes:
        if route.breaker is None:
            continue
        entry = combined.get(route_label(route.methods, route.path))
        for method in route.methods:
            states[(route.path, method)] = "unknown" if entry is None else str(entry["state"])
    return states


def _shadow_report(args: argparse.Namespace) -> int:
    import asyncio
    import json

    from gateway.reports import combine_reports
    from gateway.shadow.report import render_report

    settings = _load(args)
    reports = asyncio.run(_read_reports(settings))
    combined = combine_reports(reports, keep=settings.shadow.recent_mismatches)
    if args.json:
        print(json.dumps({"workers": combined["workers"], **combined["shadow"]}, indent=2))
        return 0
    print(render_report(combined["shadow"], workers=combined["workers"], recent=args.recent))
    if settings.flags.store == "memory":
        print(
            "note: the memory flag store shares nothing between processes; "
            "ask the admin API (/_gateway/api/shadow) instead"
        )
    return 0


def _check(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.app import create_app
    from gateway.build import build_storage
    from gateway.flags.hygiene import unused_flag_warnings
    from gateway.flags.stores import FlagStore
    from gateway.url_for_check import url_for_problems

    settings = _load(args)
    gateway = create_app(settings, log_stream=sys.stderr)
    migrated = sum(1 for route in settings.routes if route.backend != "legacy")
    legacy_rules = len(gateway.inventory.legacy_routes)
    dangling = url_for_problems(gateway.legacy.wsgi_app)
    if dangling:
        raise ConfigError(dangling)
    print(
        f"{settings.source}: ok: {len(settings.routes)} routes ({migrated} to services), "
        f"{len(settings.services)} services, {legacy_rules} legacy rules"
    )
    for name in gateway.inventory.unchecked_services():
        print(
            f"{settings.source}: note: service {name!r} does not list its routes "
            "(not a Starlette/FastAPI app), so its routes were not verified"
        )
    store = FlagStore(build_storage(settings))
    warnings = asyncio.run(unused_flag_warnings(store, settings.flag_defaults(), settings.source))
    for warning in warnings:
        print(warning, file=sys.stderr)
    return 0


def _flags(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.log import configure_logging

    settings = _load(args)
    # Only warnings (the audit lines among them) go to stderr; the table or JSON to stdout.
    configure_logging(format=settings.logging.format, level="warning", stream=sys.stderr)
    return asyncio.run(_flags_action(args, settings))


async def _flags_action(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from gateway.build import build_flags, build_storage
    from gateway.errors import StoreUnavailable
    from gateway.flags.hygiene import change_flags

    runtime = build_flags(settings, build_storage(settings))
    command = args.flags_command
    try:
        await runtime.start()
        view = runtime.view()
        if command in ("get", "set") and args.name not in view["flags"]:
            known = ", ".join(view["flags"]) or "none"
            raise ConfigError.at(
                settings.source, "routes", f"unknown flag {args.name!r} (known: {known})"
            )
        if not view["store_loaded"]:
            print(
                f"gateway: the flag store {runtime.store.description} is unavailable",
                file=sys.stderr,
            )
            return EXIT_STARTUP
        actor = f"{getpass.getuser()} (cli)"
        if command == "set":
            spec = _changed_spec(view["flags"][args.name], args)
            name = args.name
            await runtime.update(
                lambda state: state.model_copy(update={"flags": {**state.flags, name: spec}}),
                actor=actor,
            )
        elif command in ("delete", "reset"):
            print(
                await change_flags(runtime, command, args.name, actor=actor, source=settings.source)
            )
        elif command in ("kill", "unkill"):
            enabled = command == "kill"
            await runtime.update(
                lambda state: state.model_copy(update={"kill_switch": enabled}), actor=actor
            )
        view = runtime.view()
    except StoreUnavailable as exc:
        print(f"gateway: the flag store is unavailable: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    finally:
        await runtime.stop()
    _print_flags(view, args)
    return 0


def _changed_spec(current: dict[str, Any], args: argparse.Namespace) -> FlagSpec:
    from pydantic import ValidationError

    from gateway.flags.model import FlagSpec

    values = {key: value for key, value in current.items() if key != "source"}
    if args.mode is not None:
        values["mode"] = args.mode
    if args.percentage is not None:
        values["percentage"] = args.percentage
    for field in ("allow_subject", "deny_subject", "allow_role", "deny_role"):
        given = getattr(args, field)
        if given is not None:
            values[f"{field}s"] = [value for value in given if value]
    try:
        return FlagSpec.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        raise ConfigError([f"gateway flags set: {key}: {error['msg']}"]) from None


def _print_flags(view: dict[str, Any], args: argparse.Namespace) -> None:
    if getattr(args, "json", False):
        import json

        print(json.dumps(view, indent=2))
        return
    names = [args.name] if args.flags_command in ("get", "set") else list(view["flags"])
    print(
        f"store: {view['store']}  version: {view['version']}  "
        f"kill switch: {'ON (everything on legacy)' if view['kill_switch'] else 'off'}"
    )
    table = [("FLAG", "MODE", "PERCENT", "ALLOW", "DENY", "SOURCE")]
    for name in names:
        spec = view["flags"][name]
        allow = [*spec["allow_subjects"], *(f"role:{r}" for r in spec["allow_roles"])]
        deny = [*spec["deny_subjects"], *(f"role:{r}" for r in spec["deny_roles"])]
        table.append(
            (
                name,
                spec["mode"],
                f"{spec['percentage']}%" if spec["mode"] == "canary" else "-",
                ",".join(sorted(allow)) or "-",
                ",".join(sorted(deny)) or "-",
                spec["source"],
            )
        )
    _print_table(table)


def _print_table(table: Sequence[Sequence[str]]) -> None:
    from gateway.shadow.report import render_table

    for line in render_table(table):
        print(line)


if __name__ == "__main__":
    raise SystemExit(main())
