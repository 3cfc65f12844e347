"""prometheus-client's multiprocess mode under ``gateway serve --workers N``: its directory.

Each worker process writes its values to files in one directory (``PROMETHEUS_MULTIPROC_DIR``,
read by prometheus-client when a worker imports it), and a scrape of any worker adds up every
worker's files. The directory must be fresh for each run (files left by an earlier run would be
added in) and the files of a worker that died must stop counting in the gauges of live workers
(``mark_process_dead``). ``gateway serve`` does both: it makes a new directory before any
worker starts, marks each replaced worker dead, and removes the directory when it exits::

    with multiprocess_directory() as directory:   # sets PROMETHEUS_MULTIPROC_DIR
        WorkerSupervisor(config, sockets=[sock]).run()
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import multiprocess
from uvicorn.supervisors import Multiprocess

#: The variable prometheus-client reads, at import, to choose file-backed values.
ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def multiprocess_directory() -> Iterator[Path]:
    """A fresh directory named in ``PROMETHEUS_MULTIPROC_DIR`` while the workers run; removed
    (with the variable) at the end."""
    directory = Path(tempfile.mkdtemp(prefix="gateway-metrics-"))
    previous = os.environ.get(ENV)
    os.environ[ENV] = str(directory)
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
        shutil.rmtree(directory, ignore_errors=True)


class WorkerSupervisor(Multiprocess):
    """uvicorn's supervisor, marking the metric files of every worker it replaced as dead, so
    the ``livesum``/``livemax`` gauges (in-flight requests, pool, breakers) forget it."""

    def keep_subprocess_alive(self) -> None:
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        self._mark_gone(before)

    def restart_all(self) -> None:
        before = {process.pid for process in self.processes}
        super().restart_all()
        self._mark_gone(before)

    def _mark_gone(self, before: set[int | None]) -> None:
        directory = os.environ.get(ENV)
        if directory is None:
            return
        for pid in before - {process.pid for process in self.processes}:
            if pid is not None:
                # prometheus-client leaves this function unannotated.
                multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
