"""Each layer's cost over HTTP: the gateway with one layer switched off at a time, CPU per request.

::

    python bench/ablation_bench.py                     # 5 rounds x 3 s per configuration
    python bench/ablation_bench.py --rounds 3 --path /new/hello
    python bench/ablation_bench.py --unpinned          # also with the server free on both cores
    python bench/ablation_bench.py --layers none --baseline /tmp/before --path /legacy/hello
                                      # this tree against another checkout (git worktree), CPU/req

Every configuration is ``bench/ablation_serve.py LAYER serve -c bench/gateway.toml`` (the layers
of ``bench/ablation.py``; ``none`` is the whole gateway), plus the gateway with metrics off
(``GATEWAY_METRICS__ENABLED=false``: the in-flight counters and the observer) and the same
endpoint on bare uvicorn for ``/trivial``. They are measured as ``http_bench.py`` measures (wrk,
warm-up, the server pinned to core 0 and wrk to core 1, interleaved rounds), and each one's CPU
time per request is read from ``/proc``: steadier than req/s when others use the machine.

A layer's cost is the whole gateway's CPU per request minus the gateway's without it, taken
within each round (the two ran back to back); the median and range over rounds are printed.
``--floor`` (``/trivial``, ``/new/hello`` or ``/legacy/hello``) adds the endpoint on bare uvicorn
behind the gateway's request-context layer alone, without and with the JSON access line
(``bench/floor_apps.py``); on ``/legacy/hello`` the direct configuration is the legacy adapter
alone, with gunicorn and granian in the same rounds, and on ``/trivial`` uvicorn with its own
access log is added for comparison. It splits the gateway's cost over the direct configuration
into that layer, its access line and the rest (what a gateway of this design pays before it does
anything else), and prints issue 15's targets as the most CPU per request the whole gateway may
use, from the comparison servers of the same rounds.
``--layers`` picks the layers (``none``: only the whole gateway); ``--baseline DIR`` adds the
whole gateway served from another checkout, and prints this tree's CPU per request minus the
baseline's and the ratio baseline / this tree (above 1: this tree is cheaper), per round.
The exit status is non-zero only when a run broke.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ablation import ABLATIONS
from bench.http_bench import (
    _UVICORN,
    _UVICORN_QUIET,
    BENCH_CONFIG,
    GRANIAN_WSGI,
    GUNICORN,
    PIN_MODES,
    UVICORN_FASTAPI,
    UVICORN_TRIVIAL,
    Case,
    PinMode,
    Server,
    WrkResult,
    _measure_all,
    cpu_ratio,
    granian_missing,
    run_guarded,
)

_SERVE = (sys.executable, "bench/ablation_serve.py")
_GATEWAY_ARGS = ("serve", "-c", BENCH_CONFIG, "--port", "{port}")
#: ``--floor``: the endpoint behind the request-context layer alone, on bare uvicorn
#: (``bench/floor_apps.py``), by path: the app's name there.
FLOOR_APPS = {"/trivial": "trivial", "/new/hello": "new", "/legacy/hello": "legacy"}


def _uvicorn(name: str, app: str, *options: str) -> Server:
    return Server(name, (*_UVICORN, app, *(options or _UVICORN_QUIET)))


def floor_cases(path: str) -> list[Case]:
    """The floor's configurations for ``path`` (one of ``FLOOR_APPS``)."""
    app = f"bench.floor_apps:{FLOOR_APPS[path]}"
    built = []
    if path == "/legacy/hello":
        # No gateway at all is Flask on another server; here the bare floor is the adapter.
        adapter = _uvicorn("uv-adapter", "bench.floor_apps:legacy_adapter")
        built.append(Case("direct", "floor", "uvicorn + the legacy adapter", adapter, path))
    built += [
        Case(
            "context",
            "floor",
            "request context, no line",
            _uvicorn("uv-ctx", f"{app}_context"),
            path,
        ),
        Case(
            "context-line",
            "floor",
            "request context + line",
            _uvicorn("uv-line", f"{app}_logged"),
            path,
        ),
    ]
    if path == "/legacy/hello":
        # Issue 15's bars for the legacy route: 1.5x gunicorn's throughput, 0.7x granian's.
        built.append(Case("gunicorn", "floor", "gunicorn sync, 1 worker", GUNICORN, path))
        if not granian_missing("the floor's comparison with Flask on granian"):
            built.append(Case("granian", "floor", "granian WSGI, 1 worker", GRANIAN_WSGI, path))
    if path == "/trivial":
        # For comparison, the usual way to log each request: uvicorn's own access log (to the
        # same kind of file), with no request context.
        logged = _uvicorn(
            "uv-logged", "bench.apps:trivial_asgi", "--log-level", "info", "--no-proxy-headers"
        )
        built.append(Case("uvicorn-line", "floor", "uvicorn's own access log", logged, path))
    return built


def cases(
    path: str, layers: Sequence[str], baseline: Path | None, *, floor: bool = False
) -> tuple[Case, ...]:
    built = [
        Case(
            layer,
            "ablation",
            "the whole gateway" if layer == "none" else f"without {layer}",
            Server(f"gw-{layer}", (*_SERVE, layer, *_GATEWAY_ARGS)),
            path,
        )
        for layer in ABLATIONS
        if layer == "none" or layer in layers
    ]
    no_metrics = Server(
        "gw-no-metrics",
        (*_SERVE, "none", *_GATEWAY_ARGS),
        env=(("GATEWAY_METRICS__ENABLED", "false"),),
    )
    if "metrics" in layers:
        built.append(Case("metrics", "ablation", "without metrics", no_metrics, path))
    if baseline is not None:
        built.append(
            Case("baseline", "ablation", "baseline checkout", baseline_server(baseline), path)
        )
    if path == "/trivial":
        built.append(Case("direct", "ablation", "uvicorn + trivial_asgi", UVICORN_TRIVIAL, path))
    elif path == "/new/hello":
        built.append(Case("direct", "ablation", "uvicorn + FastAPI", UVICORN_FASTAPI, path))
    if floor:
        built.extend(floor_cases(path))
    return tuple(built)


def baseline_server(directory: Path) -> Server:
    """The whole gateway served from another checkout (run from there, so its code is used)."""
    argv = (sys.executable, "-m", "gateway.cli", *_GATEWAY_ARGS)
    return Server("gw-baseline", argv, cwd=directory.resolve())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=3, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--path", default="/trivial", help="the route measured")
    parser.add_argument("--unpinned", action="store_true", help="also measure unpinned")
    parser.add_argument(
        "--layers",
        default=",".join([*ABLATIONS, "metrics"][1:]),
        help="comma-separated layers to switch off (default: all); 'none': only the whole gateway",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="also serve the whole gateway from this checkout: this tree's cost against it",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also the endpoint behind the request-context layer alone, without and with the line",
    )
    args = parser.parse_args(argv)
    if args.floor and args.path not in FLOOR_APPS:
        parser.error(f"--floor measures {', '.join(FLOOR_APPS)} only")
    layers = [layer for layer in args.layers.split(",") if layer and layer != "none"]
    unknown = set(layers) - {*ABLATIONS, "metrics"}
    if unknown:
        parser.error(f"--layers: unknown {', '.join(sorted(unknown))}")
    if args.baseline is not None and not (args.baseline / "gateway" / "cli.py").is_file():
        parser.error(f"--baseline {args.baseline}: no gateway/cli.py there")
    args.cases = cases(args.path, layers, args.baseline, floor=args.floor)
    return run_guarded("ablation_bench", lambda wrk: _measure_and_report(args, wrk))


def _measure_and_report(args: argparse.Namespace, wrk: str) -> int:
    modes = PIN_MODES if args.unpinned else PIN_MODES[:1]
    runs = _measure(args, wrk, modes)
    broken = False
    for mode in modes:
        broken |= _report(mode.name, mode.description, runs[mode.name], args)
    return 1 if broken else 0


def _measure(
    args: argparse.Namespace, wrk: str, modes: Sequence[PinMode]
) -> dict[str, dict[str, list[WrkResult]]]:
    runs: dict[str, dict[str, list[WrkResult]]] = {
        mode.name: {case.key: [] for case in args.cases} for mode in modes
    }
    _measure_all(args, wrk, runs, modes)
    return runs


def _report(
    mode: str, description: str, runs: dict[str, list[WrkResult]], args: argparse.Namespace
) -> bool:
    print(f"\n== {mode}: {description}, GET {args.path} (median of {args.rounds} round(s)) ==")
    broken = False
    for case in args.cases:
        results = runs[case.key]
        broken |= any(r.non_2xx or r.socket_errors for r in results)
        rps = statistics.median(r.rps for r in results)
        cpu = statistics.median(r.cpu_us or 0.0 for r in results)
        print(f"  {case.label:<28}{rps:>9.0f} req/s  {cpu:7.1f} µs CPU/req")
    whole = runs["none"]
    print("\n  layer cost = CPU/req of the whole gateway - without the layer (per round):")
    for case in args.cases:
        if case.key == "none" or case.group == "floor":
            continue
        label = {
            "direct": "the whole gateway over bare uvicorn",
            "baseline": "this tree over the baseline",
        }.get(case.key, case.key)
        _spread_line(label, _differences(whole, runs[case.key]))
        if case.key == "baseline":
            ratios = [cpu_ratio(b, a) for a, b in zip(whole, runs[case.key], strict=True)]
            print(
                f"  {'CPU/req baseline / this tree':<36}{statistics.median(ratios):7.3f}   "
                f"(range {min(ratios):.3f} to {max(ratios):.3f})"
            )
    if "context" in runs:
        _report_floor(runs, args.path)
    return broken


def _report_floor(runs: dict[str, list[WrkResult]], path: str) -> None:
    """The gateway's cost over the endpoint served directly (for ``/legacy/hello``: the legacy
    adapter alone), split: the request-context layer alone, its access line, and everything else
    the gateway does (each a difference within a round)."""
    print(
        "\n  the floor: the whole gateway's cost over the direct configuration, split (per round):"
    )
    steps = [
        ("request context alone (no line)", "context", "direct"),
        ("its JSON access line", "context-line", "context"),
        ("the rest of the gateway", "none", "context-line"),
        ("the whole gateway over direct", "none", "direct"),
    ]
    if "uvicorn-line" in runs:
        steps.append(("for comparison: uvicorn's access log", "uvicorn-line", "direct"))
    for label, upper, lower in steps:
        _spread_line(label, _differences(runs[upper], runs[lower]))
    bars = [(label, key, bar) for label, key, bar in _BARS[path] if key in runs]
    print("\n  issue 15's bars, as the most CPU per request the whole gateway may use (per round):")
    floor = [r.cpu_us or 0.0 for r in runs["context-line"]]
    print(f"  {'the floor (request context + line)':<36}{statistics.median(floor):7.1f} µs")
    for label, key, bar in bars:
        _spread_line(label, [bar(r.cpu_us or 0.0) for r in runs[key]])


def _differences(upper: list[WrkResult], lower: list[WrkResult]) -> list[float]:
    """``upper``'s CPU per request minus ``lower``'s, round by round."""
    return [(a.cpu_us or 0.0) - (b.cpu_us or 0.0) for a, b in zip(upper, lower, strict=True)]


def _spread_line(label: str, values: list[float]) -> None:
    """One line: the median of per-round values in µs, and their range."""
    print(
        f"  {label:<36}{statistics.median(values):7.1f} µs  "
        f"(range {min(values):.1f} to {max(values):.1f})"
    )


#: Issue 15's targets for each path, as the most CPU per request the whole gateway may use given
#: the comparison server's own CPU per request in the same round.
_BARS: dict[str, tuple[tuple[str, str, Callable[[float], float]], ...]] = {
    "/trivial": (("bare uvicorn + 12 µs", "direct", lambda cpu: cpu + 12.0),),
    "/new/hello": (("0.85x uvicorn + FastAPI's rate", "direct", lambda cpu: cpu / 0.85),),
    "/legacy/hello": (
        ("1.5x gunicorn's rate", "gunicorn", lambda cpu: cpu / 1.5),
        ("0.7x granian's rate", "granian", lambda cpu: cpu / 0.7),
    ),
}


if __name__ == "__main__":
    sys.exit(main())
