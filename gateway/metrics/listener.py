"""``[metrics] listen``: the text format on an address of its own, without authentication.

Prometheus scrapers usually reach a separate port that the load balancer does not expose,
instead of carrying an admin credential. ``gateway serve`` starts prometheus-client's own HTTP
server there, in a daemon thread of the serving process: with ``--workers N`` in the supervisor,
rendering a registry that reads every worker's files; with one worker, in that worker, rendering
its registry. Either way the numbers are at most a second old (workers flush once a second)::

    with serving_metrics(settings.metrics, app.metrics, separate_workers=workers > 1):
        ...                               # run the server (or the workers' supervisor)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from gateway.errors import StartupError
from gateway.metrics.multiproc import multiprocess_directory
from gateway.metrics.runtime import Metrics
from gateway.settings import MetricsSettings


def split_address(listen: str) -> tuple[str, int]:
    """``("127.0.0.1", 9100)`` for ``127.0.0.1:9100``; ``[::1]:9100`` for IPv6."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def start_listener(listen: str, registry: Collector) -> WSGIServer:
    host, port = split_address(listen)
    try:
        server, _thread = start_http_server(port, host, registry)
    except OSError as exc:
        problem = f"cannot listen on {listen} for [metrics] listen: {exc.strerror or exc}"
        raise StartupError(problem) from None
    return server


@contextmanager
def serving_metrics(
    settings: MetricsSettings, metrics: Metrics | None, *, separate_workers: bool
) -> Iterator[None]:
    """What ``gateway serve`` runs around its server: with ``separate_workers`` (``--workers
    N``, ``--reload``), a fresh multiprocess directory for the workers it is about to start;
    and the ``listen`` address, rendering the workers' files (or ``metrics``' registry when
    this process serves the requests itself)."""
    if not settings.enabled:
        yield
        return
    with ExitStack() as stack:
        registry: Collector | None = metrics.registry if metrics is not None else None
        if separate_workers:
            directory = stack.enter_context(multiprocess_directory())
            registry = CollectorRegistry()
            # prometheus-client leaves this constructor unannotated.
            MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
        if settings.listen is not None and registry is not None:
            server = start_listener(settings.listen, registry)
            stack.callback(server.server_close)
            stack.callback(server.shutdown)
        yield
