"""The gateway's handle on one legacy worker process: start it, talk to it, stop or kill it.

::

    worker = WorkerHandle(0)
    await worker.start(settings)               # spawned, the app loaded: READY
    worker.send(("request", seq, environ, facts, body))
    frame = await worker.read()                # raises WorkerDied when the process is gone
    await worker.stop(grace=10)                # close the connection; kill after ``grace``

The process is a fresh interpreter (``python -c``, as multiprocessing's ``spawn`` start method
runs one), never a ``fork`` of the gateway: the gateway has threads (the log sink's, the flag
store's), and a forked child inherits their locks in whatever state they were. It runs with the
gateway's ``sys.path``, so it imports the same gateway and the same app, and inherits its
standard output and error, so its log lines join the gateway's on the same stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from typing import TYPE_CHECKING, Any

from gateway.adapters.frames import READY, encode, read_frame
from gateway.errors import StartupError

if TYPE_CHECKING:
    from gateway.settings import Settings

#: Seconds a worker may take to start and load the app.
START_TIMEOUT = 60.0
_BOOT = (
    "import sys; sys.path[:] = {path!r}; "
    "from gateway.adapters.legacy_worker import main; main({fd})"
)


class WorkerDied(Exception):
    """The worker's connection ended: the process exited, crashed or was killed."""


class WorkerHandle:
    def __init__(self, index: int) -> None:
        self.index = index
        self.pid: int | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._seq = 0

    @property
    def exit_status(self) -> int | None:
        return None if self._process is None else self._process.returncode

    def next_request(self) -> int:
        """A number for the next request, which tells its frames from an earlier one's."""
        self._seq += 1
        return self._seq

    async def start(self, settings: Settings) -> None:
        """Start the process and wait until it has loaded the app; ``StartupError`` if not."""
        ours, theirs = socket.socketpair()
        try:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _BOOT.format(path=sys.path, fd=theirs.fileno()),
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the worker's copy is the only one: its exit ends the stream
        self._reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        self.send((settings,))
        try:
            async with asyncio.timeout(START_TIMEOUT):
                frame = await self.read()
        except (WorkerDied, TimeoutError):
            await self.kill()
            raise StartupError(
                f"legacy worker process {self.index} did not load the app "
                f"(exit status {self.exit_status}; its log lines above say why)"
            ) from None
        if frame[0][0] != READY:
            await self.kill()
            raise StartupError(f"legacy worker process {self.index} sent {frame!r} at start")
        self.pid = frame[0][1]

    def send(self, message: Any) -> None:
        """Queue a frame; never blocks (a dead worker shows up at the next ``read``)."""
        assert self._writer is not None, "start() first"
        self._writer.write(encode(message))

    async def read(self) -> Any:
        assert self._reader is not None, "start() first"
        try:
            return await read_frame(self._reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            raise WorkerDied from None

    async def stop(self, grace: float) -> None:
        """Close the connection (the worker exits once its request is done); kill after
        ``grace`` seconds."""
        self._close_connection()
        if self._process is not None:
            try:
                async with asyncio.timeout(grace):
                    await self._process.wait()
            except TimeoutError:
                await self.kill()

    async def kill(self) -> None:
        self._close_connection()
        process = self._process
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def _close_connection(self) -> None:
        if self._writer is not None:
            self._writer.close()
