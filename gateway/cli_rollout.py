"""``gateway rollout start|status|pause|resume|abort``: progressive delivery from the shell.

::

    gateway rollout start "GET /api/books"    # the route's flag moves through its steps
    gateway rollout status [--json]           # each rollout's step, leader and last verdict
    gateway rollout pause catalog-books       # a flag name, or a route
    gateway rollout resume catalog-books      # the current step again, with a fresh window
    gateway rollout abort catalog-books       # back to legacy, for good

Every change goes through the flag store (every process and host follows within a second)
and is written as an audit line. Exit status: 0 done, 1 the rollout's state does not allow it
or the store is unavailable, 2 an unknown route or flag, or a config error.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
from typing import Any

from gateway.errors import StoreUnavailable
from gateway.rollout.changes import RolloutError
from gateway.route_lookup import RouteNotFound
from gateway.settings import load_settings


def register(commands: Any) -> None:
    rollout = commands.add_parser(
        "rollout",
        help="move a route's flag through its steps automatically, guarded by analysis",
        description="Start, watch, pause, resume or abort a route's progressive rollout.",
    )
    actions = rollout.add_subparsers(required=True, metavar="ACTION", dest="rollout_command")

    def add(name: str, help_text: str, target: str | None) -> argparse.ArgumentParser:
        command: argparse.ArgumentParser = actions.add_parser(
            name, help=help_text, description=help_text
        )
        command.add_argument("--config", "-c", metavar="PATH", help="config file")
        if target is not None:
            command.add_argument("target", metavar=target)
        command.set_defaults(handler=_rollout)
        return command

    add("start", "start moving the route's flag through its [routes.rollout] steps", "ROUTE")
    add("status", "each rollout: step, leader, last verdict", None).add_argument(
        "--json", action="store_true", help="print JSON"
    )
    add("pause", "stop advancing (the flag stays where it is)", "FLAG_OR_ROUTE")
    add("resume", "run the current step again with a fresh window", "FLAG_OR_ROUTE")
    add("abort", "send the flag back to legacy and end the rollout", "FLAG_OR_ROUTE")


def _rollout(args: argparse.Namespace) -> int:
    # Here, not at the top: `gateway --help` and `gateway serve` build this command's parser.
    from gateway.log import configure_logging

    settings = load_settings(args.config, os.environ)
    configure_logging(format=settings.logging.format, level="warning", stream=sys.stderr)
    return asyncio.run(_act(args, settings))


async def _act(args: argparse.Namespace, settings: Any) -> int:
    from gateway.build import build_flags, build_storage
    from gateway.rollout.commands import RolloutCommands, describe

    flags = build_flags(settings, build_storage(settings))
    actor = f"{getpass.getuser()} (cli)"
    try:
        await flags.start()
        if not flags.loaded:
            print(
                f"gateway: the flag store {flags.store.description} is unavailable", file=sys.stderr
            )
            return 1
        commands = RolloutCommands(settings, flags)
        command = args.rollout_command
        if command == "status":
            return _status(flags.state.rollouts, as_json=args.json)
        flag, rollout = await getattr(commands, command)(args.target, actor=actor)
        print(_line(describe(flag, rollout, time.time())))
        return 0
    except RouteNotFound as exc:
        print(f"gateway: rollout: {exc}", file=sys.stderr)
        return 2
    except RolloutError as exc:
        print(f"gateway: rollout: {exc}", file=sys.stderr)
        return 1
    except StoreUnavailable as exc:
        print(f"gateway: the flag store is unavailable: {exc}", file=sys.stderr)
        return 1
    finally:
        await flags.stop()


def _status(rollouts: Any, *, as_json: bool) -> int:
    from gateway.rollout.commands import describe

    now = time.time()
    described = [describe(flag, rollout, now) for flag, rollout in sorted(rollouts.items())]
    if as_json:
        print(json.dumps({"rollouts": described}, indent=2))
    elif not described:
        print("no rollouts (start one with `gateway rollout start ROUTE`)")
    for entry in described if not as_json else ():
        print(_line(entry))
        verdict = entry["last_verdict"]
        if verdict is not None:
            print(f"  last analysis: {verdict['reason']}")
        if entry["reason"] and entry["status"] != "running":
            print(f"  why {entry['status']}: {entry['reason']}")
    return 0


def _line(entry: dict[str, Any]) -> str:
    current = entry["current"]
    where = "shadow" if current == "shadow" else f"{current}%"
    steps = " → ".join(
        f"[{s}]" if i + 1 == entry["step"] else str(s) for i, s in enumerate(entry["steps"])
    )
    leader = f", leader {entry['leader']}" if entry["leader"] else ""
    return (
        f"{entry['flag']} ({entry['route']}): {entry['status']} at step {entry['step']}/"
        f"{len(entry['steps'])} ({where}; {steps}) for {entry['step_age_seconds']:.0f} s{leader}"
    )
