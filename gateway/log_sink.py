"""Where log lines go: a buffered, thread-safe writer shared by structlog and stdlib logging.

A ``write()`` system call per line costs more than rendering the line (tens of microseconds on a
virtual machine), and the gateway writes one access line per request. So ``info`` and ``debug``
lines are collected and written together at most ``interval`` seconds later (or when 64 KiB are
waiting); ``warning`` and above are written at once, with everything before them, so an error
is never held back and lines keep their order. A daemon thread does the periodic flush, and the
buffer is flushed at interpreter exit::

    sink = LineSink(sys.stdout)
    sink.write('{"event": "request", ...}', urgent=False)
    sink.write_later(render, fields)   # render(fields) runs when the line is written
    logger = SinkLogger(sink)       # a structlog logger: logger.info(line), logger.error(line)

``write_later`` keeps the rendering off the caller's path too: the gateway queues each access
line's fields and the flush (on the flusher thread, mostly) renders them, in order with the
lines around them. Rendering and writing happen under one lock, one batch after another, so
lines from any thread keep their order.

Bluntly: a process killed with SIGKILL loses at most ``interval`` seconds of info lines.

A sink survives ``fork()`` (``gunicorn --preload`` builds the app, and so the sink, before it
forks its workers): no write is in progress at the fork, and the child starts with a fresh lock,
its own flusher thread (threads are not copied) and no pending lines, since the lines waiting at
the fork are the parent's to write. Each line is written once, by the process that wrote it.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, TextIO, TypeAlias

_MAX_PENDING = 64 * 1024
#: What a line queued with ``write_later`` counts towards ``_MAX_PENDING`` before it is rendered
#: (an estimate: an access line is about 250 bytes; the bound is a memory bound, not a size).
_DEFERRED_SIZE = 64
#: A line, or how to render one later.
_Entry: TypeAlias = str | tuple[Callable[[Any], str], Any]


class LineSink:
    def __init__(self, stream: TextIO, *, interval: float = 0.05) -> None:
        self._stream = stream
        self._interval = interval
        #: Guards ``_pending``; held only to add or take lines, never while writing.
        self._lock = threading.Lock()
        #: Held while a batch is rendered and written: batches reach the stream in order.
        self._write_lock = threading.Lock()
        self._pending: list[_Entry] = []
        self._size = 0
        self._closed = threading.Event()
        self._thread = self._start_flusher()
        _live_sinks.add(self)
        atexit.register(self.close)

    def _start_flusher(self) -> threading.Thread:
        thread = threading.Thread(
            target=_flush_periodically,
            args=(weakref.ref(self), self._closed, self._interval),
            name="log-flush",
            daemon=True,
        )
        thread.start()
        return thread

    def write(self, line: str, *, urgent: bool) -> None:
        with self._lock:
            self._pending.append(line + "\n")
            self._size += len(line) + 1
            due = urgent or self._size >= _MAX_PENDING
        if due:
            self.flush()

    def write_later(self, render: Callable[[Any], str], item: Any) -> None:
        """Queue a line (not urgent) that ``render(item)`` makes when it is written; ``render``
        runs on whichever thread flushes, and must not raise."""
        with self._lock:
            self._pending.append((render, item))
            self._size += _DEFERRED_SIZE
            due = self._size >= _MAX_PENDING
        if due:
            self.flush()

    def flush(self) -> None:
        with self._write_lock:
            with self._lock:
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
                self._size = 0
            data = "".join(
                [entry if isinstance(entry, str) else entry[0](entry[1]) + "\n" for entry in batch]
            )
            try:
                self._stream.write(data)
                self._stream.flush()
            except (OSError, ValueError):
                pass  # a closed or broken stream: logging must never take the gateway down

    def close(self) -> None:
        """Flush and stop the flusher (later lines are still written, at once)."""
        self._closed.set()
        self.flush()

    def _after_fork_in_child(self) -> None:
        # The copied locks are held (_before_fork took them); the pending lines are the
        # parent's, which writes them; threads are not copied, so the flusher starts again.
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending = []
        self._size = 0
        closed = self._closed.is_set()
        self._closed = threading.Event()  # its condition's lock may have been held, too
        if closed:
            self._closed.set()
        else:
            self._thread = self._start_flusher()


#: Every sink not yet collected, for the fork handlers below.
_live_sinks: weakref.WeakSet[LineSink] = weakref.WeakSet()
#: The sinks whose locks the forking thread holds, from before the fork until after it.
_forking: list[LineSink] = []


def _before_fork() -> None:
    # Wait for writes in progress, so the child never inherits a lock that a thread (which does
    # not exist in the child) holds, nor a stream caught half-way through a write.
    _forking[:] = list(_live_sinks)
    for sink in _forking:
        sink._write_lock.acquire()
        sink._lock.acquire()


def _after_fork_in_parent() -> None:
    for sink in _forking:
        sink._lock.release()
        sink._write_lock.release()
    _forking.clear()


def _after_fork_in_child() -> None:
    for sink in _forking:
        sink._after_fork_in_child()
    _forking.clear()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


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
