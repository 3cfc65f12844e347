"""The ``gateway serve --workers N`` supervisor: it starts the workers at once and never builds
the app itself; a worker that cannot build it says why, and everything stops with that reason.

The supervisor binds the socket, writes the pid file, forwards ``SIGHUP`` and serves the metrics
listener; none of that needs Flask, FastAPI or the services, so it imports none of them (it
stays near uvicorn's own supervisor in memory, and no extra build delays the workers' start).
The config is still checked before anything is served: the supervisor reads it
(``load_settings``: a broken file exits 2 there), and each worker builds the app before it
accepts a connection. A worker whose build fails (``ConfigError``, ``StartupError``) puts the
lines the CLI would print on a queue and exits with uvicorn's ``STARTUP_FAILURE``; the
supervisor stops every worker instead of restarting that one, prints each line once (every
worker finds the same problem) and exits with the CLI's status for it::

    failures = StartupFailures()
    app = ServedApp("gateway.toml", pid_file, failures.queue)
    status = failures.run(uvicorn.Config(app, factory=True, workers=2), sockets=[sock])
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from dataclasses import dataclass
from multiprocessing.queues import SimpleQueue
from pathlib import Path
from socket import socket
from typing import TYPE_CHECKING

import structlog
from uvicorn import Config
from uvicorn.config import STARTUP_FAILURE

from gateway.cpu_pinning import CpuSlots
from gateway.errors import EXIT_STARTUP, ConfigError, StartupError, failure_report
from gateway.reload_control import ForwardingMultiprocess

if TYPE_CHECKING:
    from gateway.app import GatewayApp

#: What a worker that could not build the app sends: the exit status and the lines to print.
Failure = tuple[int, list[str]]


@dataclass(frozen=True, slots=True)
class ServedApp:
    """The app factory ``gateway serve`` hands uvicorn for worker processes (picklable: uvicorn
    sends its config to each spawned worker): the gateway from ``config`` (as the operator named
    it, so that problems name it the same way) and ``GATEWAY_*``, with live reload. With
    ``failures``, a build that fails is reported there and ends the worker; without
    (``--reload``), it raises."""

    config: str
    pid_file: Path
    failures: SimpleQueue[Failure] | None = None
    #: ``server.pin_workers``: each worker pins itself to a CPU of its own before it builds.
    cpus: CpuSlots | None = None

    def __call__(self) -> GatewayApp:
        # Imported here, in the worker: the supervisor only pickles this object.
        from gateway.app import create_app
        from gateway.log import exit_now
        from gateway.reload_control import enable_live_reload
        from gateway.settings import load_settings

        cpu = None if self.cpus is None else self.cpus.claim()
        try:
            app = create_app(load_settings(self.config, os.environ))
        except (ConfigError, StartupError) as exc:
            if self.failures is None:
                raise
            self.failures.put(failure_report(exc))
            # At once: a slow interpreter shutdown could miss the supervisor's health check,
            # which then waits its whole timeout before it sees this worker gone.
            exit_now(STARTUP_FAILURE)
        if cpu is not None:
            structlog.get_logger("gateway.server").info("server.worker_pinned", cpu=cpu)
        return enable_live_reload(app, self.pid_file)


class StartupFailures:
    """The queue workers report a failed build on, and the supervisor that reads it."""

    def __init__(self) -> None:
        # uvicorn starts its workers with "spawn"; a queue reaches a child only as it starts.
        self.queue: SimpleQueue[Failure] = multiprocessing.get_context("spawn").SimpleQueue()

    def run(self, config: Config, *, sockets: list[socket]) -> int:
        """Run the workers until they stop; print what made them stop, if a failure did, and
        return the exit status: 0 after a signal, the failed worker's status otherwise."""
        supervisor = _Supervisor(config, sockets=sockets, failures=self.queue)
        supervisor.run()
        reported: list[Failure] = []
        while not self.queue.empty():
            reported.append(self.queue.get())
        for line in dict.fromkeys(line for _, lines in reported for line in lines):
            print(line, file=sys.stderr)
        if reported:
            return reported[0][0]
        if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
            return EXIT_STARTUP  # a lifespan that failed: the worker logged its one line
        return 0


class _Supervisor(ForwardingMultiprocess):
    """Stops as soon as a worker has reported a failed build or ended with ``STARTUP_FAILURE``
    (a failed lifespan), before the next round of health checks: uvicorn would stop too, but
    only once its round reaches that worker, and a check of a worker that is still starting,
    or exiting, can wait out the whole timeout (5 s) first."""

    def __init__(
        self, config: Config, *, sockets: list[socket], failures: SimpleQueue[Failure]
    ) -> None:
        super().__init__(config, sockets=sockets)
        self._failures = failures

    def keep_subprocess_alive(self) -> None:
        ended = (process.exitcode for process in self.processes)
        if not self._failures.empty() or STARTUP_FAILURE in ended:
            self.should_exit.set()
            return
        super().keep_subprocess_alive()
