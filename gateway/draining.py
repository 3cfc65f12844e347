"""uvicorn's server, ending with exit status 0 after a SIGTERM it drained.

uvicorn re-raises the signals it handled once it has shut down, so that a process ends "as the
signal would have ended it" (uvicorn PR #1600): after a clean, drained SIGTERM the process then
dies of that signal, status 143, which supervisors and CI jobs read as a failure. gunicorn and
most servers exit 0 after a graceful stop; so does ``gateway serve``. SIGINT is still re-raised
(Ctrl-C ends the command as usual)::

    DrainingServer(uvicorn.Config(app)).run(sockets=[sock])

This leans on ``uvicorn.Server.capture_signals`` and its ``_captured_signals`` list (hence the
upper bound on uvicorn in pyproject.toml); ``tests/test_e2e_shutdown.py`` checks the exit status
and ``tests/test_upstream_internals.py`` that the attribute is still there.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import uvicorn


class DrainingServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # Reached only when serving ended normally, SIGTERM's drain included.
            self._captured_signals[:] = [
                sig for sig in self._captured_signals if sig != signal.SIGTERM
            ]
