"""The one way the gateway replaces a file: readers see the old content or the new, never half.

::

    write_atomically(Path("var/flags.json"), payload)

The payload goes to a temporary file in the same folder, is flushed to disk, and is renamed over
the old file; then the folder itself is synced so the rename survives a crash. The file keeps
the mode it had (new files get ``0o644``), so workers running as another user than the operator
who wrote it can still read it. Used for the flag state and for worker reports alike.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import structlog

from gateway.errors import StoreUnavailable

log = structlog.get_logger("gateway.storage")

#: Files the storage creates; readable by workers that run as another user than the operator.
DEFAULT_MODE = 0o644


def write_atomically(path: Path, payload: bytes) -> None:
    """Replace ``path`` with ``payload`` (creating its folder); ``StoreUnavailable`` when the
    file cannot be written, and the old content is then untouched."""
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = DEFAULT_MODE
    except OSError as exc:
        raise StoreUnavailable(f"{path}: cannot write ({exc.strerror})") from exc
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise StoreUnavailable(f"{directory}: cannot create a file ({exc.strerror})") from exc
    try:
        with os.fdopen(fd, "wb") as temp:
            # mkstemp creates 0600; keep the mode the file had so other users' workers can
            # still read it after an operator's write.
            os.fchmod(temp.fileno(), mode)
            temp.write(payload)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException as exc:
        Path(temp_name).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise StoreUnavailable(f"{path}: cannot write ({exc.strerror})") from exc
        raise
    # The rename is durable only once the directory entry is on disk. Readers already see the
    # new content, so a failure here is worth a warning, not a failed write.
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        log.warning("storage.not_synced", path=str(path), reason=str(exc))
