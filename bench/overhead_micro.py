"""The gateway's own cost per request, in process: no sockets, no server, no HTTP parsing.

::

    python bench/overhead_micro.py                    # 20,000 calls x 7 repeats per variant
    python bench/overhead_micro.py -n 5000 --repeats 3
    python bench/overhead_micro.py --profile          # and where the gateway's time goes
    python bench/overhead_micro.py --tracing          # and a third gateway, tracing on
    python bench/overhead_micro.py --recording        # and gateways recording /trivial
    python bench/overhead_micro.py --ablate           # and the gateway without each layer
    python bench/overhead_micro.py --new-route        # and GET /new/hello, FastAPI direct
    python bench/overhead_micro.py --browser          # a browser's 11 request headers, not 2

The gateway is built from ``bench/gateway.toml`` with ``create_app``, once with the access log on
(written to ``os.devnull``, so rendering and the write call are paid for but no disk is) and
once with it off; their lifespans run as a server would run them. Each variant is then called
as an ASGI app for ``GET /trivial`` with a minimal HTTP scope and stub ``receive``/``send``:

- the gateway, access log on and off;
- the trivial service the gateway routes to (``bench.apps.trivial_asgi``), called directly;
- with ``--tracing`` (the ``otel`` extra): the gateway with the access log and tracing on, every
  request sampled, spans batched by the SDK's ``BatchSpanProcessor`` to an exporter that drops
  them (the export itself runs on the SDK's thread, not in the request).

- with ``--recording``: the gateway with ``[routes.record]`` on ``/trivial``, once with
  ``sample_rate = 1.0`` (every request captured and handed to the writer thread, which writes
  samples to a temporary folder until its queue is full, then drops: the request path pays the
  same either way) and once with ``sample_rate = 0.0`` (the route is matched and the coin tossed,
  nothing captured).

- with ``--new-route``: ``GET /new/hello`` (the bench's FastAPI service) through the gateway,
  the same FastAPI app called directly, and the gateway's ``/trivial`` and the direct FastAPI
  call alternated, one of each per call. The gateway's overhead on that route is the first
  minus the second; the alternation shows how much of it is not the gateway's own work but the
  two code paths evicting each other from the CPU caches (the alternated pair against the sum
  of its halves timed apart), and the same FastAPI call after a 1 MiB memory copy that leaves
  the caches cold (the copy's own time taken out).

- with ``--ablate``: the gateway (access log on) with one layer of its request path switched
  off at a time (``bench/ablation.py``: the access line, the observers that feed metrics and
  rollouts, the request head, limits and auth checks, the dispatcher's recording hook); the
  difference to the whole gateway is that layer's cost, printed as a breakdown.

Tracing off is the first variant: compare it with the same command run in a checkout from
before tracing existed to see what the off switch costs.

Repeats interleave the variants and the report gives the median µs per request. The difference
between the gateway and the direct call is the gateway's pure in-process overhead (middleware,
canonical path, authentication, route match, request id, access line); in ``http_bench.py`` the
same difference also includes the larger response (two extra headers) the server writes.

These are lower bounds: a tight loop keeps the gateway's code and data in the CPU caches, which a
server interleaving HTTP parsing, socket writes and other connections does not.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from checks_micro import BROWSER_HEADERS, request_scope  # a sibling: the script's folder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.app import GatewayApp, create_app
from gateway.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
BENCH_CONFIG = REPO / "bench" / "gateway.toml"
PATH = "/trivial"
NEW_ROUTE = "/new/hello"
_HEADERS = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"overhead_micro")]

BASE_SCOPE: dict[str, Any] = request_scope(PATH, _HEADERS)
NEW_ROUTE_SCOPE: dict[str, Any] = request_scope(NEW_ROUTE, _HEADERS)
#: What ``bench.apps``'s FastAPI ``/new/hello`` answers.
_NEW_BODY = b'{"hello":"new","n":1}'
REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    app: ASGIApp
    #: Awaited after each timed run, untimed: work the variant left running in the background
    #: (the sample writer's thread) must not be billed to the next variant.
    settle: Callable[[], Awaitable[None]] | None = None
    #: The request each call sends (a copy of it), and the body it must answer with.
    scope: dict[str, Any] = field(default_factory=lambda: BASE_SCOPE)
    body: bytes | None = b"ok"


async def _receive() -> Message:
    return REQUEST


async def _discard(message: Message) -> None:
    pass


class Lifespan:
    """Speaks the ASGI lifespan protocol to an app, as a server does."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._to_app: asyncio.Queue[Message] = asyncio.Queue()
        self._from_app: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}

        async def serve() -> None:
            await self._app(scope, self._to_app.get, self._from_app.put)

        self._task = asyncio.create_task(serve())
        await self._expect("lifespan.startup", "lifespan.startup.complete")

    async def shutdown(self) -> None:
        await self._expect("lifespan.shutdown", "lifespan.shutdown.complete")
        if self._task is not None:
            await self._task

    async def _expect(self, event: str, wanted: str) -> None:
        await self._to_app.put({"type": event})
        reply = await self._from_app.get()
        if reply["type"] != wanted:
            raise RuntimeError(f"{event}: the app answered {reply}")


def build_gateway(
    *, access_log: bool, log_stream: TextIO, config: Path = BENCH_CONFIG, **options: Any
) -> GatewayApp:
    environ = {"GATEWAY_LOGGING__ACCESS_LOG": "true" if access_log else "false"}
    if options:
        environ["GATEWAY_TRACING__ENABLED"] = "true"
    return create_app(load_settings(config, environ), log_stream=log_stream, **options)


def build_recording_gateway(log_stream: TextIO, folder: Path, rate: float) -> GatewayApp:
    """The bench gateway with ``[routes.record]`` on ``/trivial``, samples kept in ``folder``."""
    text = BENCH_CONFIG.read_text(encoding="utf-8")
    route = 'path = "/trivial"\nmethods = ["GET"]\nbackend = "trivial"\n'
    record = f"[routes.record]\nsample_rate = {rate}\nmax_samples = 100000000\n"
    text = text.replace(route, route + record) + f"\n[record]\ndir = {str(folder)!r}\n"
    config = folder / f"gateway-{rate}.toml"
    config.write_text(text, encoding="utf-8")
    return build_gateway(access_log=True, log_stream=log_stream, config=config)


def build_traced_gateway(log_stream: TextIO) -> GatewayApp:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    return build_gateway(access_log=True, log_stream=log_stream, tracer_provider=provider)


async def check(variant: Variant) -> None:
    """One call, looked at: a variant that does not answer 200 and its body would measure
    nothing. (A variant made of checked ones, ``body=None``, is not looked at.)"""
    if variant.body is None:
        return
    sent: list[Message] = []

    async def record(message: Message) -> None:
        sent.append(message)

    await variant.app(dict(variant.scope), _receive, record)
    status = sent[0].get("status") if sent else None
    body = b"".join(m.get("body", b"") for m in sent[1:])
    if status != 200 or body != variant.body:
        raise RuntimeError(f"{variant.name}: expected 200 {variant.body!r}, got {status} {body!r}")


async def time_calls(variant: Variant, calls: int) -> float:
    """µs per call for ``calls`` sequential requests (each with its own copy of the scope)."""
    app, base = variant.app, variant.scope
    started = time.perf_counter_ns()
    for _ in range(calls):
        await app(dict(base), _receive, _discard)
    return (time.perf_counter_ns() - started) / calls / 1000


#: Copied from one buffer to another, this touches 2 MiB, a core's L2 cache on the machines
#: these notes come from: little of a request's code and data stays in the CPU caches.
_EVICTION_BYTES = 1024 * 1024


def evicting(service: ASGIApp | None) -> ASGIApp:
    """One call = copying ``_EVICTION_BYTES`` (a ``memcpy``, no Python objects), then, if given,
    ``service``'s ``/new/hello`` called directly: the same call with its caches made cold."""
    source = bytes(_EVICTION_BYTES)
    target = bytearray(_EVICTION_BYTES)

    async def copy_then_call(scope: Scope, receive: Receive, send: Send) -> None:
        target[:] = source
        if service is not None:
            await service(scope, receive, send)

    return copy_then_call


def alternated(gateway: ASGIApp, service: ASGIApp) -> ASGIApp:
    """One call = the gateway's ``/trivial``, then ``service``'s ``/new/hello`` called directly."""

    async def both(scope: Scope, receive: Receive, send: Send) -> None:
        await gateway(scope, receive, send)  # the variant's own copy of BASE_SCOPE
        await service(dict(NEW_ROUTE_SCOPE), receive, send)

    return both


async def measure(variants: Sequence[Variant], calls: int, repeats: int) -> dict[str, list[float]]:
    for variant in variants:
        await check(variant)
        await time_calls(variant, calls // 10)  # warm-up
    timings: dict[str, list[float]] = {variant.name: [] for variant in variants}
    for _ in range(repeats):
        for variant in variants:
            timings[variant.name].append(await time_calls(variant, calls))
            if variant.settle is not None:
                await variant.settle()
    return timings


async def profile(app: ASGIApp, calls: int, top: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    await time_calls(Variant("profiled", app), calls)
    profiler.disable()
    print(f"\n== profile: gateway, access log on, {calls} calls (cProfile inflates small calls) ==")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(top)


async def run(args: argparse.Namespace, log_stream: TextIO) -> None:
    # Built one after the other: configure_logging is global, but each gateway's access logger
    # is bound at build time to the stream configured then (the same one here).
    logged = build_gateway(access_log=True, log_stream=log_stream)
    silent = build_gateway(access_log=False, log_stream=log_stream)
    traced = build_traced_gateway(log_stream) if args.tracing else None
    recording: list[GatewayApp | None] = [None, None]
    if args.recording:
        folder = Path(tempfile.mkdtemp(prefix="overhead-recording-"))
        recording = [build_recording_gateway(log_stream, folder, rate) for rate in (1.0, 0.0)]
    apps = (logged, silent, traced, *recording)
    lifespans = [Lifespan(app) for app in apps if app is not None]
    for lifespan in lifespans:
        await lifespan.startup()
    try:
        variants = [
            Variant("gateway, access log on", logged),
            Variant("gateway, access log off", silent),
            Variant("trivial service, direct", logged.services["trivial"].app),
        ]
        if traced is not None:
            variants.append(Variant("gateway, tracing on", traced))
        if args.new_route:
            fastapi = logged.services["fast"].app
            variants += [
                Variant("gateway, /new/hello", logged, scope=NEW_ROUTE_SCOPE, body=_NEW_BODY),
                Variant("FastAPI, direct", fastapi, scope=NEW_ROUTE_SCOPE, body=_NEW_BODY),
                Variant("alternated", alternated(logged, fastapi), body=None),
                Variant("1 MiB copy", evicting(None), body=None),
                Variant("1 MiB copy, FastAPI", evicting(fastapi), scope=NEW_ROUTE_SCOPE, body=None),
            ]
        if args.ablate:
            from bench.ablation import ABLATIONS, ablated_handler

            layers = [layer for layer in ABLATIONS if layer != "none"]
            variants += [
                Variant(f"without {layer}", ablated_handler(logged, layer)) for layer in layers
            ]
            if args.new_route:
                variants += [
                    Variant(
                        f"without {layer}, {NEW_ROUTE}",
                        ablated_handler(logged, layer),
                        scope=NEW_ROUTE_SCOPE,
                        body=_NEW_BODY,
                    )
                    for layer in layers
                ]
        if recording[0] is not None and recording[1] is not None:
            writer = recording[0].recorder

            async def drained() -> None:
                # A thread's queue offers no event to await: poll it.
                while writer is not None and writer.pending:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)

            variants.append(Variant("gateway, recording 100%", recording[0], drained))
            variants.append(Variant("gateway, recording 0%", recording[1]))
        timings = await measure(variants, args.calls, args.repeats)
        report(timings, args)
        if args.profile:
            await profile(logged, args.calls, args.top)
    finally:
        for lifespan in reversed(lifespans):
            await lifespan.shutdown()
        for rate, app in zip(("100%", "0%"), recording, strict=True):
            if app is not None and app.recorder is not None:
                print(
                    f"recording {rate}: {app.recorder.written} samples written, "
                    f"{app.recorder.dropped} dropped (queue full)"
                )


def report(timings: dict[str, list[float]], args: argparse.Namespace) -> None:
    median = {name: statistics.median(values) for name, values in timings.items()}
    print(
        f"GET {PATH}, {args.calls} calls x {args.repeats} repeats, median µs per request "
        f"(Python {sys.version.split()[0]})"
    )
    width = max(28, *(len(name) + 2 for name in timings))
    print(f"{'variant':<{width}}{'µs/req':>9}{'min':>9}{'max':>9}")
    for name, values in timings.items():
        print(f"{name:<{width}}{median[name]:>9.2f}{min(values):>9.2f}{max(values):>9.2f}")
    logged, silent = median["gateway, access log on"], median["gateway, access log off"]
    direct = median["trivial service, direct"]
    print()
    print(f"{'gateway overhead, access log on':<37}{logged - direct:>8.2f} µs/req")
    print(f"{'gateway overhead, access log off':<37}{silent - direct:>8.2f} µs/req")
    print(f"{'access line alone':<37}{logged - silent:>8.2f} µs/req")
    if "gateway, tracing on" in median:
        tracing = median["gateway, tracing on"] - logged
        print(f"{'tracing on (spans batched, dropped)':<37}{tracing:>8.2f} µs/req")
    if "FastAPI, direct" in median:
        fastapi = median["FastAPI, direct"]
        apart = logged + fastapi
        rows = {
            "gateway overhead, access log on": median["gateway, /new/hello"] - fastapi,
            "/trivial + FastAPI, timed apart": apart,
            "the same, alternated": median["alternated"],
            "interference (alternated - apart)": median["alternated"] - apart,
            "FastAPI after a 1 MiB copy, extra": median["1 MiB copy, FastAPI"]
            - median["1 MiB copy"]
            - fastapi,
        }
        print(f"\nGET {NEW_ROUTE} (FastAPI):")
        for label, value in rows.items():
            print(f"  {label:<35}{value:>8.2f} µs/req")
    ablated = {
        name: value
        for name, value in median.items()
        if name.startswith("without ") and not name.endswith(NEW_ROUTE)
    }
    if ablated:
        new_route = median.get("gateway, /new/hello")
        print("\nper layer (the whole gateway minus the gateway without it):")
        print(f"  {'':<35}{PATH:>8}" + (f"{NEW_ROUTE:>12}" if new_route is not None else ""))
        for name, value in ablated.items():
            line = f"  {name.removeprefix('without '):<35}{logged - value:>8.2f}"
            if new_route is not None:
                line += f"{new_route - median[f'{name}, {NEW_ROUTE}']:>12.2f}"
            print(line + " µs/req")
        rest = direct + sum(logged - value for value in ablated.values())
        print(f"  {'dispatcher, service wrapper, rest':<35}{logged - rest:>8.2f} µs/req")
    if "gateway, recording 100%" in median:
        every = median["gateway, recording 100%"] - logged
        none = median["gateway, recording 0%"] - logged
        print(f"{'recording every request':<37}{every:>8.2f} µs/req")
        print(f"{'recording configured, not sampled':<37}{none:>8.2f} µs/req")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--calls", type=int, default=20_000, help="calls per repeat")
    parser.add_argument("--repeats", type=int, default=7, help="repeats per variant (median)")
    parser.add_argument("--profile", action="store_true", help="profile the gateway afterwards")
    parser.add_argument("--tracing", action="store_true", help="also measure tracing on")
    parser.add_argument(
        "--recording", action="store_true", help="also measure [routes.record] on /trivial"
    )
    parser.add_argument(
        "--ablate", action="store_true", help="also measure the gateway without each layer"
    )
    parser.add_argument(
        "--new-route",
        action="store_true",
        help="also measure GET /new/hello (FastAPI) and how it and the gateway interfere",
    )
    parser.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    parser.add_argument(
        "--browser", action="store_true", help="send a browser's 11 headers instead of two"
    )
    args = parser.parse_args(argv)
    if args.browser:
        BASE_SCOPE["headers"] = NEW_ROUTE_SCOPE["headers"] = BROWSER_HEADERS
    if args.calls < 10 or args.repeats < 1:
        parser.error("--calls must be at least 10 and --repeats at least 1")
    # `python bench/overhead_micro.py` puts bench/ first on sys.path, not the repository, and
    # the config names its apps as `bench.apps:...`.
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    with open(os.devnull, "w", encoding="utf-8") as devnull:
        asyncio.run(run(args, devnull))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
