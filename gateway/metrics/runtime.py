"""One worker's metrics: the families, the recorder, the registry a scrape renders, the flusher.

::

    metrics = Metrics(multiprocess_dir=None)   # or the directory `gateway serve --workers N` made
    async with metrics:                        # flushes every second, and once more at the end
        metrics.recorder.request(facts, 200, 0.004)
        body = metrics.render()                # flush, then the text format of ``registry``

``registry`` is what a scrape renders: this worker's own registry, or, in multiprocess mode,
one whose collector reads every worker's files (prometheus-client's ``MultiProcessCollector``),
so any worker's scrape shows the whole server. The dashboard reads the same families through
``collect()``, which flushes first.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.metrics.families import Families
from gateway.metrics.recorder import Recorder
from gateway.storage.tasks import PeriodicTask

log = structlog.get_logger("gateway.metrics")

#: The ``Content-Type`` of the text format (version 0.0.4), as Prometheus expects it.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self, *, multiprocess_dir: Path | None = None, interval: float = 1.0) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.recorder = Recorder()
        # A metric is never worth stopping the flusher (or a request): a failed flush is logged.
        self._flusher = PeriodicTask(
            interval, self.flush, logger=log, failure_event="metrics.flush_failed"
        )
        if multiprocess_dir is None:
            self.registry = CollectorRegistry()
            self.families = Families(self.registry)
        else:
            # The values go to files (prometheus-client chose its file-backed values when it
            # was imported with PROMETHEUS_MULTIPROC_DIR set); the families are registered on a
            # registry of their own that nothing renders, so no sample is counted twice.
            self.families = Families(CollectorRegistry())
            self.registry = CollectorRegistry()
            # prometheus-client leaves this constructor unannotated.
            MultiProcessCollector(self.registry, path=str(multiprocess_dir))  # type: ignore[no-untyped-call]

    def flush(self) -> None:
        self.recorder.flush(self.families)

    def collect(self) -> Iterable[Metric]:
        """The registry's families with this worker's latest numbers: what the dashboard reads."""
        self.flush()
        return self.registry.collect()

    def render(self) -> bytes:
        """The text format of everything, this worker's latest numbers included."""
        self.flush()
        return generate_latest(self.registry)

    def counted(self, app: ASGIApp, backend: str) -> ASGIApp:
        """``app``, with the requests it is serving counted as in flight for ``backend``."""
        in_flight = self.recorder.in_flight
        in_flight.setdefault(backend, 0)

        async def call(scope: Scope, receive: Receive, send: Send) -> None:
            in_flight[backend] += 1
            try:
                await app(scope, receive, send)
            finally:
                in_flight[backend] -= 1

        return call

    async def __aenter__(self) -> Metrics:
        self._flusher.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._flusher.stop()
        self.flush()
