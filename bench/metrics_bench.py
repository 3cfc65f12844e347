"""What Prometheus metrics cost: the same gateway with ``[metrics]`` on and off, over HTTP.

::

    python bench/metrics_bench.py                       # 5 rounds x 3 s per configuration
    python bench/metrics_bench.py --rounds 3 --duration 2

Four configurations of ``gateway serve -c bench/gateway.toml`` (tracing off, the JSON access log
on, as in ``http_bench.py``): ``/new/hello`` (FastAPI) and ``/legacy/hello`` (Flask), each with
metrics on (the default) and off (``GATEWAY_METRICS__ENABLED=false``), measured in interleaved
pairs (``bench/paired.py``). The target (metrics on within 3 % of off: ratio >= 0.97) is
reported, not enforced: the exit status is non-zero only when a run broke.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.http_bench import GATEWAY, Case, Server
from bench.paired import Pair, run

METRICS_OFF = Server(
    "gateway-no-metrics", GATEWAY.argv, env=(("GATEWAY_METRICS__ENABLED", "false"),)
)
PAIRS = (
    Pair(
        "new route",
        Case("new.off", "new", "/new/hello, metrics off", METRICS_OFF, "/new/hello"),
        Case("new.on", "new", "/new/hello, metrics on", GATEWAY, "/new/hello"),
    ),
    Pair(
        "legacy route",
        Case("legacy.off", "legacy", "/legacy/hello, metrics off", METRICS_OFF, "/legacy/hello"),
        Case("legacy.on", "legacy", "/legacy/hello, metrics on", GATEWAY, "/legacy/hello"),
    ),
)


def main(argv: Sequence[str] | None = None) -> int:
    description = (__doc__ or "").split("\n\n")[0]
    return run("metrics_bench", description, PAIRS, argv, feature="metrics")


if __name__ == "__main__":
    sys.exit(main())
