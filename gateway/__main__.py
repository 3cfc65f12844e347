"""``python -m gateway``: the ``gateway`` command, for when its script is not on ``PATH``.

::

    python -m gateway serve --config gateway.toml
    python -m gateway --version
"""

from __future__ import annotations

from gateway.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
