"""Starting servers for the benchmarks: a free port, and waiting until a server answers.

::

    port = free_port()
    process = subprocess.Popen([...], stdout=log_file, ...)
    wait_until_ready(process, port, "/_gateway/ready", log_path)   # or raises ServerNotReady
"""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
from pathlib import Path

HOST = "127.0.0.1"


class ServerNotReady(RuntimeError):
    """A server exited or never answered 200; the message ends with its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until_ready(
    process: subprocess.Popen[bytes],
    port: int,
    path: str,
    log_path: Path,
    *,
    timeout: float = 20.0,
) -> None:
    """Poll ``GET path`` until it answers 200; raise ``ServerNotReady`` (with the command, the
    last error and the end of the server's log) if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            last_error = f"the server exited with status {process.returncode}"
            break
        connection = http.client.HTTPConnection(HOST, port, timeout=2)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                return
            last_error = f"HTTP {response.status}"
        except OSError as exc:
            last_error = str(exc)
        finally:
            connection.close()
        time.sleep(0.05)
    command = " ".join(str(part) for part in process.args)  # type: ignore[union-attr]
    log = log_path.read_text(errors="replace").splitlines()
    shown = "\n".join(f"    {line}" for line in log[-40:]) or "    (empty)"
    raise ServerNotReady(
        f"{command} never answered 200 at {path} ({last_error}; waited at most "
        f"{timeout:.0f} s); its log ends with:\n{shown}"
    )
