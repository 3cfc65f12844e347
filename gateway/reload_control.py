"""How a reload reaches every worker of ``gateway serve``, and how each says what it did.

- ``gateway serve`` writes its process id to a pid file (``--pid-file``; by default
  ``var/run/gateway.pid`` beside the config file) and removes it when it stops.
- ``SIGHUP`` to that process reloads the config in every worker (``gateway.live_config``).
  With ``--workers N``, uvicorn's supervisor would *replace* the workers on ``SIGHUP``;
  ``ForwardingMultiprocess`` passes the signal on to each worker instead, so each swaps its
  config in place. With ``--reload``, ``ConfigWatchingReload`` passes it on to the worker, and
  also sends it whenever the config file changes (uvicorn's own reloader still restarts the
  worker on a ``.py`` change).
- Each worker writes its status to ``<pid file folder>/<pid file stem>.workers/<pid>.json``
  (atomically) when it starts and after every reload: generation, outcome, what was not
  applied live, the problems of a rejected file. ``gateway reload`` (``gateway.cli_reload``)
  sends the signal and waits for every worker's next generation.

::

    from gateway.asgi import create_app_from_environ    # in a worker

    app = enable_live_reload(create_app_from_environ(), Path("var/run/gateway.pid"))
    # once its lifespan has started: SIGHUP reloads, and the status file says how it went
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from socket import socket
from typing import TYPE_CHECKING, Any

import structlog
import watchfiles
from uvicorn import Config
from uvicorn.supervisors.watchfilesreload import WatchFilesReload

from gateway.errors import StoreUnavailable
from gateway.metrics.multiproc import WorkerSupervisor
from gateway.settings import CONFIG_ENV, DEFAULT_CONFIG
from gateway.storage.atomic import write_atomically

if TYPE_CHECKING:
    # The workers' side only: the `serve --workers N` supervisor imports this module for its
    # pid file and SIGHUP forwarding, and must not load the app (gateway.supervisor).
    from gateway.app import GatewayApp
    from gateway.live_config import ReloadOutcome

log = structlog.get_logger("gateway.reload")

#: Where ``gateway serve`` writes its pid, relative to the config file's folder.
DEFAULT_PID_FILE = Path("var/run/gateway.pid")


def default_pid_file(config: str | None, environ: Mapping[str, str]) -> Path:
    """The pid file for the config ``gateway serve --config`` (or ``$GATEWAY_CONFIG``) names."""
    config_path = Path(config or environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    return config_path.resolve().parent / DEFAULT_PID_FILE


def status_dir(pid_file: Path) -> Path:
    return pid_file.with_name(f"{pid_file.stem}.workers")


@contextlib.contextmanager
def pid_file_written(path: Path) -> Iterator[Path]:
    """Write this process's pid to ``path`` while the block runs; remove it after, unless
    another server has written its own pid there meanwhile. A pid file that cannot be written
    (a read-only folder in a container) costs ``gateway reload``, not the server: a warning,
    and ``SIGHUP`` to the process still reloads."""
    pid = str(os.getpid()).encode()
    try:
        write_atomically(path, pid + b"\n")
    except StoreUnavailable as exc:
        log.warning(
            "reload.pid_file_not_written",
            reason=str(exc),
            consequence="gateway reload cannot find this server (choose a writable --pid-file); "
            "SIGHUP still reloads",
        )
        yield path
        return
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            if path.read_bytes().strip() == pid:
                path.unlink()


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One worker's last word, as its status file holds it."""

    pid: int
    #: The process that started it: the supervisor with ``--workers``/``--reload``.
    ppid: int
    generation: int
    outcome: str  # "started", "applied" or "rejected"
    result: str
    config: str
    not_applied_live: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()

    @classmethod
    def read(cls, path: Path) -> WorkerStatus | None:
        """The status in ``path``; ``None`` when it is gone or not one (a worker just left)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            data["not_applied_live"] = tuple(data.get("not_applied_live", ()))
            data["problems"] = tuple(data.get("problems", ()))
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None


def read_statuses(pid_file: Path, server_pid: int) -> dict[int, WorkerStatus]:
    """The status of every live worker of the server whose pid is ``server_pid``."""
    statuses = {}
    for path in sorted(status_dir(pid_file).glob("*.json")):
        status = WorkerStatus.read(path)
        if status is None or server_pid not in (status.pid, status.ppid):
            continue
        if process_alive(status.pid):
            statuses[status.pid] = status
    return statuses


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


class LiveReload:
    """A worker's part of the gateway's lifetime (``GatewayApp.extras``): reload on ``SIGHUP``,
    one reload at a time (a signal during one reloads again once it is done), and keep the
    status file."""

    def __init__(self, app: GatewayApp, pid_file: Path, environ: Mapping[str, str]) -> None:
        self._app = app
        self._environ = environ
        self._status_file = status_dir(pid_file) / f"{os.getpid()}.json"
        self._generation = 0
        self._task: asyncio.Task[None] | None = None
        self._again = False

    async def __aenter__(self) -> LiveReload:
        await self._write_status(None)
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.request)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_signal_handler(signal.SIGHUP)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # stopping: a late reload is moot
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._status_file.unlink(missing_ok=True)

    def request(self) -> None:
        """Reload now, or again after the reload under way (the file may have changed since
        that one read it)."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        from gateway.live_config import reload_config

        self._again = True
        while self._again:
            self._again = False
            self._generation += 1
            outcome = await reload_config(self._app, self._environ, self._generation)
            await self._write_status(outcome)

    async def _write_status(self, outcome: ReloadOutcome | None) -> None:
        status = WorkerStatus(
            pid=os.getpid(),
            ppid=os.getppid(),
            generation=self._generation,
            outcome="started" if outcome is None else outcome.outcome,
            result="started" if outcome is None else outcome.describe(),
            config=self._app.settings.source,
            not_applied_live=() if outcome is None else outcome.not_applied_live,
            problems=() if outcome is None else outcome.problems,
        )
        payload = json.dumps(asdict(status)).encode()
        try:
            await asyncio.to_thread(write_atomically, self._status_file, payload)
        except StoreUnavailable as exc:  # the reload happened; only `gateway reload` is blind
            log.warning("reload.status_not_written", path=str(self._status_file), reason=str(exc))


def enable_live_reload(
    app: GatewayApp, pid_file: Path, environ: Mapping[str, str] | None = None
) -> GatewayApp:
    """Make ``app`` reload its config on ``SIGHUP`` once started (call in the main thread).

    Until its lifespan has started, ``SIGHUP`` is ignored rather than fatal: a reload sent
    while a worker is still starting would otherwise kill it (the signal's default action),
    and that worker reads the current file anyway."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    app.extras.append(LiveReload(app, pid_file, os.environ if environ is None else environ))
    return app


def _forward_hup(pid: int | None) -> None:
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)


class ForwardingMultiprocess(WorkerSupervisor):
    """uvicorn's worker supervisor (with the metrics' clean-up of replaced workers), where
    ``SIGHUP`` reloads each worker's config in place (uvicorn's own ``handle_hup`` starts new
    workers and stops the old ones)."""

    def handle_hup(self) -> None:
        log.info("reload.forwarded", workers=[process.pid for process in self.processes])
        for process in self.processes:
            _forward_hup(process.pid)


class ConfigWatchingReload(WatchFilesReload):
    """uvicorn's ``--reload`` supervisor (restarts the worker when a ``.py`` file changes),
    which also reloads the worker's config in place when ``config_file`` changes or the
    supervisor gets ``SIGHUP``. The folder is watched, not the file: an editor or a tool that
    writes atomically replaces the file, and a watch on the old one would see nothing more."""

    def __init__(
        self,
        config: Config,
        target: Callable[[list[socket] | None], None],
        sockets: list[socket],
        *,
        config_file: Path,
    ) -> None:
        super().__init__(config, target, sockets)
        self._config_file = config_file.resolve()
        self._watcher = threading.Thread(target=self._watch, name="config-watcher", daemon=True)

    def startup(self) -> None:
        super().startup()
        signal.signal(signal.SIGHUP, lambda signum, frame: self.forward())
        self._watcher.start()

    def forward(self) -> None:
        _forward_hup(self.process.pid)

    def _watch(self) -> None:
        target = str(self._config_file)
        for _changes in watchfiles.watch(
            self._config_file.parent,
            watch_filter=lambda change, path: path == target,
            stop_event=self.should_exit,
            recursive=False,
        ):
            log.info("reload.config_changed", config=target)
            self.forward()


def describe_statuses(statuses: Mapping[int, WorkerStatus]) -> list[dict[str, Any]]:
    """The distinct results of ``statuses``, each with the workers that gave it."""
    results: dict[str, dict[str, Any]] = {}
    for status in statuses.values():
        entry = results.setdefault(status.result, {"status": status, "workers": []})
        entry["workers"].append(status.pid)
    return list(results.values())
