"""The request checks (request head, body limits, auth) in microseconds, in process: the layers
between the request context and the dispatcher of the bench gateway, for a request with the
two headers wrk sends and with the eleven a browser's ``fetch()`` sends.

    python bench/checks_micro.py
    python bench/checks_micro.py --baseline /path/to/other/checkout --rounds 5

The bench gateway (``bench/gateway.toml``, access log off) is built as ``gateway serve`` builds
it; whatever layers sit between its ``RequestContextMiddleware`` and its ``Dispatcher`` (three
middlewares before the checks became one layer, one since; before the recording hook moved into
the dispatcher, the last layer was its ``RecordingMiddleware``, left out) are linked to an app
that does nothing and called for ``GET /new/hello`` with fresh request facts, as the request
context makes them. Each round is a fresh process: with ``--baseline`` the rounds alternate
between this checkout and the other one (``PYTHONPATH``), and the report gives each tree's
median with the lowest and highest round, and the ratio. Exits non-zero only on a broken run.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "bench" / "gateway.toml"
CALLS = 50_000
REPEATS = 9
PATH = "/new/hello"
#: The headers a browser's fetch() sends (Chromium's, values shortened); overhead_micro.py's
#: ``--browser`` sends them too.
BROWSER_HEADERS: list[tuple[bytes, bytes]] = [
    (b"host", b"127.0.0.1:8000"),
    (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0"),
    (b"accept", b"*/*"),
    (b"accept-language", b"en-GB,en;q=0.9"),
    (b"accept-encoding", b"gzip, deflate, br, zstd"),
    (b"referer", b"http://127.0.0.1:8000/"),
    (b"connection", b"keep-alive"),
    (b"sec-fetch-dest", b"empty"),
    (b"sec-fetch-mode", b"cors"),
    (b"sec-fetch-site", b"same-origin"),
    (b"cookie", b"theme=dark; lang=en"),
]
SHAPES: dict[str, list[tuple[bytes, bytes]]] = {
    "2 headers (wrk)": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"checks_micro")],
    "11 headers (a browser)": BROWSER_HEADERS,
}


def request_scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """A ``GET path`` HTTP scope from a client on loopback (``overhead_micro.py`` uses it too)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _nothing(scope: Any, receive: Any, send: Any) -> None:
    return None


def _checks_layers() -> tuple[Any, list[str]]:
    """The bench gateway's checks, linked to ``_nothing``, and their class names."""
    from gateway.app import create_app
    from gateway.middleware.request_context import RequestContextMiddleware
    from gateway.settings import load_settings

    environ = {"GATEWAY_LOGGING__ACCESS_LOG": "false"}
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        app = create_app(load_settings(CONFIG, environ), log_stream=devnull)
    link = app.path.handler
    if not isinstance(link, RequestContextMiddleware):
        raise RuntimeError(f"the request path starts with {type(link).__name__}")
    layers = []
    link = link.app
    # By name: a --baseline checkout may predate the dispatcher's recording hook.
    while type(link).__name__ not in ("Dispatcher", "RecordingMiddleware"):
        layers.append(link)
        link = link.app
    inner: Any = _nothing
    for layer in reversed(layers):
        layer = copy.copy(layer)
        layer.app = inner
        inner = layer
    return inner, [type(layer).__name__ for layer in layers]


async def _per_call_us(checks: Any, headers: list[tuple[bytes, bytes]]) -> float:
    from gateway.context import FACTS_KEY, RequestFacts

    scope = request_scope(PATH, headers)
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter_ns()
        for _ in range(CALLS):
            request = dict(scope)
            request[FACTS_KEY] = RequestFacts(request_id="r", path=PATH, method="GET")
            await checks(request, None, send)
        samples.append((time.perf_counter_ns() - started) / CALLS / 1000)
    if sent:
        raise RuntimeError(f"the checks refused the request: {sent[:2]}")
    return statistics.median(samples)


async def _child() -> None:
    checks, names = _checks_layers()
    result = {shape: await _per_call_us(checks, headers) for shape, headers in SHAPES.items()}
    print(json.dumps({"layers": names, "us": result}))


def _round(tree: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child"],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"checks_micro: the run in {tree} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f}  ({min(values):.2f} to {max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="another checkout, alternated with this one")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per tree")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        asyncio.run(_child())
        return 0
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    trees = {"this tree": REPO}
    if args.baseline is not None:
        if not (args.baseline / "gateway").is_dir():
            parser.error(f"--baseline {args.baseline}: not a checkout of this project")
        trees["baseline"] = args.baseline.resolve()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for number in range(1, args.rounds + 1):
        for name, tree in trees.items():
            result = _round(tree)
            runs[name].append(result)
            shown = ", ".join(f"{shape}: {us:.2f}" for shape, us in result["us"].items())
            print(f"  round {number} {name:<10} {shown} µs", flush=True)
    print(f"\nµs per request through the request checks ({CALLS:,} calls x {REPEATS}, median):")
    for name, results in runs.items():
        print(f"  {name}: {' + '.join(results[0]['layers'])}")
        for shape in SHAPES:
            print(f"    {shape:<24}{_spread([r['us'][shape] for r in results])}")
    if args.baseline is not None:
        print("  baseline / this tree:")
        for shape in SHAPES:
            ratios = [
                base["us"][shape] / this["us"][shape]
                for base, this in zip(runs["baseline"], runs["this tree"], strict=True)
            ]
            print(f"    {shape:<24}{_spread(ratios)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
