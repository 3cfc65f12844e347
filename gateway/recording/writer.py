"""Writing samples off the request path: a bounded queue and one background thread.

The recording hook hands each captured exchange to ``SampleWriter.offer``, which never
blocks: when the queue is full the exchange is dropped and counted. The thread redacts it,
turns it into a ``Sample`` and appends it to its route's file::

    writer = SampleWriter(redactor=Redactor(api_key_header="X-API-Key"))
    async with writer:                       # starts the thread; leaving it drains the queue
        writer.offer(exchange)               # False: dropped (queue full or writer stopped)
        writer.lines(path)                   # samples in the file, as last counted

The request path's "is the file full?" check reads ``lines``: the count as of this process's
last write, so it is approximate (other workers append to the same file). The limit itself is
exact on one host: the thread counts the file's lines under an exclusive ``flock`` just before
it appends, and writes only what still fits, so workers sharing a file never overshoot it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import queue
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from gateway.recording.redact import Redactor
from gateway.recording.samples import (
    RecordedIdentity,
    RecordedRequest,
    RecordedResponse,
    Sample,
)

log = structlog.get_logger("gateway.recording")

#: Exchanges waiting for the thread; past this, new ones are dropped (and counted).
DEFAULT_QUEUE_SIZE = 256
_STOP = object()
_STOP_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and its response as captured on the request path, not yet redacted."""

    path: Path
    #: The file may hold at most this many samples once this one is written.
    limit: int
    route: str
    method: str
    target: str
    query: bytes
    request_headers: list[tuple[bytes, bytes]]
    request_body: bytes
    identity: RecordedIdentity
    status: int
    response_headers: list[tuple[bytes, bytes]]
    response_body: bytes
    backend: str
    max_body: int


class SampleWriter:
    def __init__(self, *, redactor: Redactor, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._redactor = redactor
        self._queue: queue.Queue[Exchange | object] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        #: Each file's (size in bytes, lines) as last counted by the thread.
        self._counted: dict[Path, tuple[int, int]] = {}
        #: Exchanges dropped because the queue was full or the writer was not running.
        self.dropped = 0
        #: Samples appended by this process.
        self.written = 0

    # -- the request path --------------------------------------------------------------------

    def offer(self, exchange: Exchange) -> bool:
        """Queue ``exchange`` for writing; never blocks. False when it was dropped."""
        if self._thread is None:
            self.dropped += 1
            return False
        try:
            self._queue.put_nowait(exchange)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    @property
    def pending(self) -> int:
        """Exchanges queued, not yet written (approximate, as ``Queue.qsize`` is)."""
        return self._queue.qsize()

    def lines(self, path: Path) -> int:
        """The samples in ``path`` as this process last counted them (0 before any count)."""
        counted = self._counted.get(path)
        return 0 if counted is None else counted[1]

    # -- life cycle --------------------------------------------------------------------------

    async def __aenter__(self) -> SampleWriter:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gateway-samples", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Write what is queued, then end the thread (bounded: a stuck disk must not hold up
        shut-down; what is still queued then is lost, and logged)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._queue.put(_STOP)
        thread.join(_STOP_TIMEOUT)
        if thread.is_alive():
            log.warning("recording.writer_did_not_stop", queued=self._queue.qsize())
        if self.dropped:
            log.warning("recording.dropped", dropped=self.dropped, written=self.written)

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if not isinstance(item, Exchange):
                continue
            try:
                self._write(item)
            except Exception:
                # A full disk or a bad sample costs that sample, never the thread.
                log.exception("recording.write_failed", path=str(item.path))

    def _write(self, exchange: Exchange) -> None:
        sample = self._sample(exchange)
        exchange.path.parent.mkdir(parents=True, exist_ok=True)
        with exchange.path.open("a+b") as out:
            fcntl.flock(out, fcntl.LOCK_EX)
            try:
                lines = self._count(exchange.path, out.fileno())
                if lines >= exchange.limit:
                    return
                out.write(sample.to_line().encode() + b"\n")
                out.flush()
                self.written += 1
                size = os.fstat(out.fileno()).st_size
                self._counted[exchange.path] = (size, lines + 1)
            finally:
                fcntl.flock(out, fcntl.LOCK_UN)

    def _count(self, path: Path, fd: int) -> int:
        """Lines in the file now: only the bytes added since the last count are read, unless
        the file shrank (deleted, truncated or replaced), which means counting afresh."""
        size = os.fstat(fd).st_size
        known_size, known_lines = self._counted.get(path, (0, 0))
        if size < known_size:
            known_size, known_lines = 0, 0
        lines = known_lines + count_newlines(fd, known_size, size)
        self._counted[path] = (size, lines)
        return lines

    def _sample(self, exchange: Exchange) -> Sample:
        redactor = self._redactor
        request_type = _header(exchange.request_headers, b"content-type")
        response_type = _header(exchange.response_headers, b"content-type")
        return Sample(
            route=exchange.route,
            recorded_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            request=RecordedRequest(
                method=exchange.method,
                path=exchange.target,
                query=redactor.query(exchange.query.decode("latin-1")),
                headers=redactor.request_headers(exchange.request_headers),
                body=redactor.body(exchange.request_body, request_type, limit=exchange.max_body),
                identity=exchange.identity,
            ),
            response=RecordedResponse(
                status=exchange.status,
                headers=redactor.response_headers(exchange.response_headers),
                body=redactor.body(exchange.response_body, response_type, limit=exchange.max_body),
                backend=exchange.backend,
            ),
        )


def count_newlines(fd: int, start: int, end: int) -> int:
    """Newlines in bytes ``start`` to ``end`` of an open file."""
    count, offset = 0, start
    while offset < end:
        chunk = os.pread(fd, min(1 << 20, end - offset), offset)
        if not chunk:
            break
        count += chunk.count(b"\n")
        offset += len(chunk)
    return count


def count_samples(path: Path) -> int:
    """Lines in a samples file (0 when it does not exist): what ``gateway record`` watches."""
    with contextlib.suppress(FileNotFoundError), path.open("rb") as file:
        return count_newlines(file.fileno(), 0, os.fstat(file.fileno()).st_size)
    return 0


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None
