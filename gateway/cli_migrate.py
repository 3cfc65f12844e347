"""``gateway scaffold`` and ``gateway retire``: the two ends of a route's migration.

::

    gateway scaffold GET /admin/users --service admin   # service package, route, flag, test
    gateway retire "GET /admin/users"                   # once the flag is new and shadow agrees

Both edit ``gateway.toml`` in place (comments kept, written atomically, validated first) and
exit 2 on a mistake in what was asked (an unknown rule or route, a clashing service name, a
config that does not parse or cannot be written), with nothing changed. ``retire`` exits 1
when the evidence is not there yet, saying what is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from gateway.route_lookup import RouteNotFound
from gateway.settings import CONFIG_ENV, DEFAULT_CONFIG

EXIT_USAGE = 2


def register(commands: Any) -> None:
    """Add the commands to ``gateway``'s sub-command parsers."""
    scaffold = commands.add_parser(
        "scaffold",
        help="start migrating a Flask rule: service, handler stub, route in shadow mode, test",
        description="Start migrating one Flask rule to a FastAPI service: write the service "
        "package (when new), a typed handler stub, a parity test, and a [[routes]] entry whose "
        "flag starts in shadow mode.",
    )
    scaffold.add_argument("method", metavar="METHOD", help="GET, POST, ...")
    scaffold.add_argument("rule", metavar="RULE", help="the Flask rule: /api/books/<int:book_id>")
    scaffold.add_argument("--service", required=True, metavar="NAME", help="the new service")
    _config_option(scaffold)
    scaffold.set_defaults(handler=_scaffold)

    retire = commands.add_parser(
        "retire",
        help="end a migration: serve the route by its service only, and say what can go",
        description="Serve a migrated route by its service only: remove its flag, shadow and "
        "fallback settings, keep url_for of its Flask endpoint working, and list the Flask "
        "view and tests that can be deleted. Refuses until the flag is at 'new' for everyone "
        "and shadow traffic and fallbacks show no difference.",
    )
    retire.add_argument("route", metavar="ROUTE", help='"GET /admin/users"')
    retire.add_argument(
        "--force", action="store_true", help="retire even when the evidence is missing"
    )
    _config_option(retire)
    retire.set_defaults(handler=_retire)


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        help=f"config file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG})",
    )


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def _scaffold(args: argparse.Namespace) -> int:
    # Here, not at the top: `gateway --help` and `gateway serve` build this command's parser.
    from gateway.scaffold.plan import ScaffoldError, plan_scaffold, write_plan
    from gateway.scaffold.rules import RuleNotFound

    _quiet_logging()
    try:
        plan = plan_scaffold(_config_path(args), args.method, args.rule, args.service, os.environ)
    except (ScaffoldError, RuleNotFound) as exc:
        print(f"gateway scaffold: {exc}", file=sys.stderr)
        return EXIT_USAGE
    write_plan(plan)
    print(plan.summary)
    return 0


def _quiet_logging() -> None:
    from gateway.log import configure_logging

    # Warnings (the flag store's audit line among them) go to stderr; the report to stdout.
    configure_logging(format="console", level="warning", stream=sys.stderr)


def _retire(args: argparse.Namespace) -> int:
    from gateway.retire import RetireRefused, retire
    from gateway.scaffold.rules import RuleNotFound

    _quiet_logging()

    try:
        print(retire(_config_path(args), args.route, os.environ, force=args.force))
    except (RouteNotFound, RuleNotFound) as exc:
        print(f"gateway retire: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RetireRefused as exc:
        print(f"gateway retire: refused: {exc}", file=sys.stderr)
        return 1
    return 0
