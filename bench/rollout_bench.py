"""What a running rollout costs a route: ``/new/flagged`` with and without one, over HTTP.

::

    python bench/rollout_bench.py                       # 5 rounds x 3 s per configuration
    python bench/rollout_bench.py --rounds 3 --duration 2

Two configurations of ``gateway serve -c bench/gateway.toml`` (tracing off, metrics and the JSON
access log on), each with a flag file of its own: in one, ``gateway rollout start "GET
/new/flagged"`` has started the route's rollout (``[routes.rollout]`` there: one step at 100 %
that never ends), so every request is a recorded outcome and the lease holder analyses every
interval; in the other ``gateway flags set bench-canary --mode new`` puts the same flag where a
rollout's last step puts it, with no rollout. Both send every request to the FastAPI handler.
Measured in interleaved pairs (``bench/paired.py``); the target (a running rollout within 3 % of
none: ratio >= 0.97) is reported, not enforced.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.http_bench import GATEWAY, REPO, BenchError, Case, Server
from bench.paired import Pair, run

ROUTE = "GET /new/flagged"
FLAG = "bench-canary"
CONFIG = REPO / "bench" / "gateway.toml"


def file_store(path: Path) -> tuple[tuple[str, str], ...]:
    return (("GATEWAY_FLAGS__STORE", "file"), ("GATEWAY_FLAGS__FILE", str(path)))


def gateway(flags: Path, *args: str) -> None:
    """``gateway ARGS --config bench/gateway.toml`` against the flag file ``flags``, as an
    operator would run it."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("GATEWAY_")}
    env.update(file_store(flags))
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--config", str(CONFIG)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"gateway {' '.join(args)} failed: {done.stderr.strip()}")
    print(done.stdout.strip(), flush=True)


def prepare(idle_flags: Path, rollout_flags: Path) -> None:
    gateway(idle_flags, "flags", "set", FLAG, "--mode", "new")
    gateway(rollout_flags, "rollout", "start", ROUTE)


def main(argv: Sequence[str] | None = None) -> int:
    description = (__doc__ or "").split("\n\n")[0]
    with tempfile.TemporaryDirectory(prefix="rollout_bench-") as scratch:
        idle_flags, rollout_flags = Path(scratch) / "idle.json", Path(scratch) / "rollout.json"
        idle = Server("gateway-no-rollout", GATEWAY.argv, env=file_store(idle_flags))
        running = Server("gateway-rollout", GATEWAY.argv, env=file_store(rollout_flags))
        pair = Pair(
            "new route",
            Case("new.off", "new", "/new/flagged, no rollout", idle, "/new/flagged"),
            Case("new.on", "new", "/new/flagged, rollout running", running, "/new/flagged"),
        )
        return run(
            "rollout_bench",
            description,
            [pair],
            argv,
            feature="rollout",
            prepare=lambda: prepare(idle_flags, rollout_flags),
        )


if __name__ == "__main__":
    sys.exit(main())
