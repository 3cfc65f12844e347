"""Where log lines go: a buffered, thread-safe writer shared by structlog and stdlib logging.

A ``write()`` system call per line costs more than rendering the line (tens of microseconds on a
virtual machine), and the gateway writes one access line per request. So ``info`` and ``debug``
lines are collected and written together at most ``interval`` seconds later (or when 64 KiB are
waiting); ``warning`` and above are written at once, with everything before them, so an error
is never held back and lines keep their order. A daemon thread does the periodic flush, and the
buffer is flushed at interpreter exit::

    sink = LineSink(sys.stdout)
    sink.write('{"event": "request", ...}', urgent=False)
    logger = SinkLogger(sink)       # a structlog logger: logger.info(line), logger.error(line)

Bluntly: a process killed with SIGKILL loses at most ``interval`` seconds of info lines.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any, TextIO

_MAX_PENDING = 64 * 1024


class LineSink:
    def __init__(self, stream: TextIO, *, interval: float = 0.05) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._pending: list[str] = []
        self._size = 0
        self._closed = threading.Event()
        sink = weakref.ref(self)
        self._thread = threading.Thread(
            target=_flush_periodically, args=(sink, self._closed, interval), daemon=True
        )
        self._thread.name = "log-flush"
        self._thread.start()
        atexit.register(self.close)

    def write(self, line: str, *, urgent: bool) -> None:
        with self._lock:
            self._pending.append(line + "\n")
            self._size += len(line) + 1
            if urgent or self._size >= _MAX_PENDING:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._pending:
            return
        data = "".join(self._pending)
        self._pending.clear()
        self._size = 0
        try:
            self._stream.write(data)
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stream: logging must never take the gateway down

    def close(self) -> None:
        """Flush and stop the flusher (later lines are still written, at once)."""
        self._closed.set()
        self.flush()


def _flush_periodically(
    sink_ref: weakref.ref[LineSink], closed: threading.Event, interval: float
) -> None:
    while not closed.wait(interval):
        sink = sink_ref()
        if sink is None:
            return
        sink.flush()
        del sink


class SinkLogger:
    """A structlog logger over a ``LineSink``: the method name is the level."""

    def __init__(self, sink: LineSink) -> None:
        self._sink = sink

    def _relaxed(self, message: str) -> None:
        self._sink.write(message, urgent=False)

    def _urgent(self, message: str) -> None:
        self._sink.write(message, urgent=True)

    msg = debug = info = _relaxed
    warn = warning = err = error = critical = exception = fatal = _urgent

    def __repr__(self) -> str:
        return f"<SinkLogger {self._sink!r}>"


class SinkLoggerFactory:
    def __init__(self, sink: LineSink) -> None:
        self._logger = SinkLogger(sink)

    def __call__(self, *args: Any) -> SinkLogger:
        return self._logger
