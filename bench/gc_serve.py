"""``gateway serve`` with the collector watched, and its ``gc.freeze`` optionally switched off.

::

    GC_BENCH_LOG=/tmp/gc.log python bench/gc_serve.py unfrozen serve -c bench/gateway.toml \\
        --port 8000

The first argument is ``frozen`` (the gateway as shipped: ``gc.collect(); gc.freeze()`` at the
end of its lifespan start-up) or ``unfrozen`` (the freeze is skipped; the collection still runs);
the rest is ``gateway``'s command line (one worker: the app must run in this process). A
``gc.callbacks`` timer measures every collection; a daemon thread appends one line every
quarter second to ``$GC_BENCH_LOG``::

    <time.monotonic()> <gen-2 collections> <collections> <longest pause, ms>

counting what happened since the previous line, so ``gc_bench.py`` can add up any time window
(``time.monotonic`` is the system's monotonic clock, the same in both processes). Only for
``gc_bench.py``; the product has no such switch.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway import cli

MODES = ("frozen", "unfrozen")
INTERVAL = 0.25


class PauseLog:
    """Counts collections and their longest pause between two ``flush`` calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = 0.0
        self._gen2 = self._collections = 0
        self._longest = 0.0

    def callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        with self._lock:
            self._collections += 1
            self._gen2 += info["generation"] == 2
            self._longest = max(self._longest, pause)

    def flush(self) -> str:
        with self._lock:
            line = (
                f"{time.monotonic():.3f} {self._gen2} {self._collections} {self._longest * 1e3:.3f}"
            )
            self._gen2 = self._collections = 0
            self._longest = 0.0
        return line


def _write_every(pauses: PauseLog, path: Path) -> None:
    with path.open("a", buffering=1) as out:
        while True:
            time.sleep(INTERVAL)
            out.write(pauses.flush() + "\n")


def main() -> int:
    mode, *argv = sys.argv[1:]
    if mode not in MODES:
        print(f"gc_serve: unknown mode {mode!r}; one of {', '.join(MODES)}")
        return 2
    if mode == "unfrozen":
        # Bench-only: the gateway's lifespan calls gc.freeze() through the gc module.
        gc.freeze = lambda: None
    pauses = PauseLog()
    gc.callbacks.append(pauses.callback)
    log = Path(os.environ["GC_BENCH_LOG"])
    threading.Thread(target=_write_every, args=(pauses, log), daemon=True).start()
    return cli.main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
