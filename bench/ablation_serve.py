"""``gateway serve`` with one layer of the request path switched off (``bench/ablation.py``).

::

    python bench/ablation_serve.py auth serve -c bench/gateway.toml --port 8000

The first argument names the layer (``none``: the gateway as it is); the rest is ``gateway``'s
command line. Only for ``ablation_bench.py``: an ablated gateway is not a correct one.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gateway.app
from bench.ablation import ABLATIONS, ablate
from gateway import cli


def main() -> int:
    layer, *argv = sys.argv[1:]
    if layer not in ABLATIONS:
        print(f"ablation_serve: unknown layer {layer!r}; one of {', '.join(ABLATIONS)}")
        return 2
    # `gateway serve` imports create_app from gateway.app when it runs (one worker: in this
    # process), so the module's attribute is the one to replace.
    create_app = gateway.app.create_app
    gateway.app.create_app = lambda settings, **kw: ablate(create_app(settings, **kw), layer)  # type: ignore[assignment]
    return cli.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
