"""``gateway record`` and ``gateway parity``: record a route's real traffic, then prove that the
route's service answers it as the legacy app does.

::

    gateway record "GET /api/me" --samples 20        # through the running server, every worker
    gateway parity "GET /api/me"                     # replay in process, compare, exit 1 on a diff
    gateway parity "GET /api/me" --samples other.jsonl --json

``gateway record`` asks the running server through the flag store (file or Redis: what every
worker already watches) to record each request of the route until the route's samples file
holds N more samples, waits for them (printing progress), then withdraws the request. It exits
0 once they are there, 1 when they did not arrive in time or the store is unavailable, 2 on a
usage or config error. ``gateway parity`` exits 0 when every replayed sample matched, 1 on a
mismatch (or a side that failed), 2 on a usage or config error (no samples, a bad file).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# What the commands share and is light; each imports the rest when it runs (`gateway --help`
# and `gateway serve` build this parser, and must not load the replay machinery).
from gateway.errors import StoreUnavailable
from gateway.flags.model import FlagState, Recording
from gateway.recording.samples import SampleFileError, read_samples, sample_path
from gateway.route_lookup import FoundRoute, RouteNotFound, find_route
from gateway.settings import Settings, load_settings

EXIT_MISMATCH = 1
EXIT_USAGE = 2
#: How often ``gateway record`` looks at the samples file.
_POLL = 0.2


def register(commands: Any) -> None:
    """Add ``record`` and ``parity`` to the ``gateway`` command's subcommands."""
    # Here, not at the top: gateway.cli imports this module to call register.
    from gateway.cli import add_command

    record = add_command(commands, "record", "record the next N requests of a route as samples")
    record.add_argument("route", metavar="ROUTE", help='e.g. "GET /api/me"')
    record.add_argument("--samples", type=int, default=20, metavar="N", help="default 20")
    record.add_argument(
        "--timeout", type=float, default=120.0, metavar="SECONDS", help="default 120"
    )
    record.set_defaults(handler=_record)

    parity = add_command(
        commands, "parity", "replay a route's samples against legacy and its service, compare"
    )
    parity.add_argument("route", metavar="ROUTE", help='e.g. "GET /api/me"')
    parity.add_argument(
        "--samples", metavar="FILE", help="a samples file (default: the route's in [record] dir)"
    )
    parity.add_argument(
        "--allow-unsafe",
        action="store_true",
        help="also replay POST/PUT/PATCH/DELETE (both sides change data: use a scratch database)",
    )
    parity.add_argument("--json", action="store_true", help="print JSON")
    parity.set_defaults(handler=_parity)


def _route(settings: Settings, text: str, command: str) -> FoundRoute | None:
    try:
        return find_route(settings, text)
    except RouteNotFound as exc:
        print(f"gateway {command}: {exc}", file=sys.stderr)
        return None


# -- gateway record -------------------------------------------------------------------------------


def _record(args: argparse.Namespace) -> int:
    from gateway.log import configure_logging

    settings = load_settings(args.config, os.environ)
    found = _route(settings, args.route, "record")
    if found is None:
        return EXIT_USAGE
    if args.samples < 1 or args.timeout <= 0:
        print("gateway record: --samples and --timeout must be positive", file=sys.stderr)
        return EXIT_USAGE
    if settings.flags.store == "memory":
        print(
            f"gateway record: {settings.source}: flags.store: 'memory' shares nothing with the "
            "server; use 'file' or 'redis' to record through it",
            file=sys.stderr,
        )
        return EXIT_USAGE
    configure_logging(format=settings.logging.format, level="warning", stream=sys.stderr)
    path = sample_path(settings.record.dir, found.method, found.template)
    try:
        return asyncio.run(_record_samples(settings, found, path, args.samples, args.timeout))
    except StoreUnavailable as exc:
        print(f"gateway record: the flag store is unavailable: {exc}", file=sys.stderr)
        return 1


async def _record_samples(
    settings: Settings, found: FoundRoute, path: Path, count: int, seconds: float
) -> int:
    from gateway.build import build_storage
    from gateway.flags.stores import FlagStore
    from gateway.recording.writer import count_samples

    label, start = found.label, count_samples(path)
    asked = Recording(target=start + count, until=time.time() + seconds)

    def ask(state: FlagState) -> FlagState:
        return state.model_copy(update={"recordings": {**state.recordings, label: asked}})

    def withdraw(state: FlagState) -> FlagState:
        left = {name: r for name, r in state.recordings.items() if name != label}
        return state.model_copy(update={"recordings": left})

    store = FlagStore(build_storage(settings))
    try:
        await store.update(ask)
        print(
            f"recording the next {count} requests of {label} into {path} "
            f"(every worker starts within a second; waiting up to {seconds:g}s)",
            flush=True,
        )
        deadline, shown = time.monotonic() + seconds, start
        while (now := count_samples(path)) < asked.target:
            if now != shown:
                print(f"  {now - start}/{count} recorded", flush=True)
                shown = now
            if time.monotonic() >= deadline:
                print(
                    f"gateway record: only {now - start} of {count} samples after {seconds:g}s: "
                    f"is the server running with {settings.source}, and does traffic reach "
                    f"{label}?",
                    file=sys.stderr,
                )
                return 1
            await asyncio.sleep(_POLL)
    finally:
        try:
            await store.update(withdraw)
        finally:
            await store.close()
    print(f"  {count}/{count} recorded")
    print(f"{count} samples of {label} in {path}")
    print(f'next: gateway parity "{label}"')
    return 0


# -- gateway parity -------------------------------------------------------------------------------


def _parity(args: argparse.Namespace) -> int:
    from gateway.log import configure_logging
    from gateway.replay.replay import no_samples_message, replay_samples, retired_message
    from gateway.replay.report import render_report, report_json

    settings = load_settings(args.config, os.environ)
    found = _route(settings, args.route, "parity")
    if found is None:
        return EXIT_USAGE
    if (retired := retired_message(found)) is not None:
        print(f"gateway parity: {retired}", file=sys.stderr)
        return EXIT_USAGE
    path = (
        Path(args.samples)
        if args.samples
        else sample_path(settings.record.dir, found.method, found.template)
    )
    if args.samples and not path.is_file():
        print(f"gateway parity: {path}: no such file", file=sys.stderr)
        return EXIT_USAGE
    try:
        samples = read_samples(path)
    except SampleFileError as exc:
        print(f"gateway parity: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not samples:
        print(f"gateway parity: {no_samples_message(found, path)}", file=sys.stderr)
        return EXIT_USAGE
    # The apps' own log lines go to stderr, warnings only: stdout is the report.
    configure_logging(format=settings.logging.format, level="warning", stream=sys.stderr)
    outcomes = asyncio.run(replay_samples(settings, found, samples, allow_unsafe=args.allow_unsafe))
    backend = found.settings.backend
    if args.json:
        print(json.dumps(report_json(outcomes, route=found.label, source=str(path)), indent=2))
    else:
        print(render_report(outcomes, route=found.label, source=str(path), backend=backend))
    failed = any(outcome.status in ("mismatch", "error") for outcome in outcomes)
    return EXIT_MISMATCH if failed else 0
