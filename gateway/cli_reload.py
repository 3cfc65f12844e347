"""``gateway reload``: make a running ``gateway serve`` read its config file again, and say
what every worker did with it.

::

    $ gateway reload
    gateway.toml: reload applied by 2 workers (pids 4711, 4712)
    $ gateway reload
    gateway: config error: gateway.toml: routes[5].methods: needs at least one method
    gateway.toml: reload rejected by 2 workers (pids 4711, 4712); they keep the running config

The server is found through its pid file (``gateway.reload_control``). Exit status: 0 when every
worker applied the file, 2 when they rejected it, 1 when no server or no answer was found.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Imported when used: `gateway --help` builds this command's parser.
    from gateway.reload_control import WorkerStatus

EXIT_REJECTED = 2
EXIT_NO_SERVER = 1


def register(commands: Any) -> None:
    """Add ``gateway reload`` to the CLI's subcommands."""
    text = "make a running gateway read its config again, in every worker, without a restart"
    command = commands.add_parser("reload", help=text, description=text)
    command.add_argument("--config", "-c", metavar="PATH", help="the config the server runs")
    add_pid_file_option(command)
    command.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for every worker's answer (default 30)",
    )
    command.set_defaults(handler=reload_command)


def add_pid_file_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--pid-file",
        type=Path,
        metavar="PATH",
        help="the server's pid file (default: var/run/gateway.pid beside the config file)",
    )


def pid_file_of(args: argparse.Namespace) -> Path:
    from gateway.reload_control import default_pid_file

    given: Path | None = args.pid_file
    return given.resolve() if given is not None else default_pid_file(args.config, os.environ)


def reload_command(args: argparse.Namespace) -> int:
    from gateway.reload_control import describe_statuses, process_alive, read_statuses

    pid_file = pid_file_of(args)
    try:
        server = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        print(f"gateway: no running gateway found: cannot read {pid_file}", file=sys.stderr)
        return EXIT_NO_SERVER
    if not process_alive(server):
        print(
            f"gateway: no running gateway found: {pid_file} names {server}, which has ended",
            file=sys.stderr,
        )
        return EXIT_NO_SERVER
    before = {pid: status.generation for pid, status in read_statuses(pid_file, server).items()}
    if not before:
        print(f"gateway: the gateway {server} has no started worker yet", file=sys.stderr)
        return EXIT_NO_SERVER
    os.kill(server, signal.SIGHUP)
    answers = _wait_for_answers(pid_file, server, before, args.timeout)
    silent = sorted(pid for pid in before if pid not in answers and process_alive(pid))
    rejected = False
    for entry in describe_statuses(answers):
        status: WorkerStatus = entry["status"]
        workers = _workers(entry["workers"])
        if status.outcome == "rejected":
            rejected = True
            for problem in status.problems:
                print(f"gateway: config error: {problem}", file=sys.stderr)
            print(
                f"{status.config}: reload rejected by {workers}; they keep the running config",
                file=sys.stderr,
            )
        else:
            line = f"{status.config}: reload applied by {workers}"
            if status.not_applied_live:
                line += "; not applied live (restart needed): " + ", ".join(status.not_applied_live)
            print(line)
    if silent or not answers:
        silent = silent or sorted(before)
        print(
            f"gateway: no answer within {args.timeout:g}s from {_workers(silent)}", file=sys.stderr
        )
        return EXIT_NO_SERVER
    return EXIT_REJECTED if rejected else 0


def _wait_for_answers(
    pid_file: Path, server: int, before: dict[int, int], timeout: float
) -> dict[int, WorkerStatus]:
    """Each worker's status once it is past its generation in ``before`` (or has ended)."""
    from gateway.reload_control import read_statuses

    deadline = time.monotonic() + timeout
    while True:
        statuses = read_statuses(pid_file, server)
        answers = {
            pid: status
            for pid, status in statuses.items()
            if pid in before and status.generation > before[pid]
        }
        waiting = [pid for pid in before if pid not in answers and pid in statuses]
        if not waiting or time.monotonic() >= deadline:
            return answers
        time.sleep(0.05)


def _workers(pids: list[int]) -> str:
    noun = "worker" if len(pids) == 1 else "workers"
    return f"{len(pids)} {noun} (pid{'s' if len(pids) > 1 else ''} {', '.join(map(str, pids))})"
