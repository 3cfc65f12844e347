"""``POST /api/uploads``: accept one file and answer its size and SHA-256.

The file is hashed in fixed-size chunks, so memory use does not grow with the upload. The
request body limit belongs to the gateway, which streams bodies through with a byte limit.
"""

from __future__ import annotations

import hashlib
from typing import Any

import structlog
from flask import Blueprint, abort, request

from legacy_flask.auth import login_required

bp = Blueprint("uploads", __name__)
log = structlog.get_logger(__name__)

CHUNK_SIZE = 64 * 1024


@bp.post("/api/uploads")
@login_required
def upload() -> dict[str, Any]:
    file = request.files.get("file")
    # Browsers send an empty filename when the user picked no file.
    if file is None or not file.filename:
        abort(400, "a file is required in the multipart field 'file'")
    digest = hashlib.sha256()
    size = 0
    while chunk := file.stream.read(CHUNK_SIZE):
        digest.update(chunk)
        size += len(chunk)
    log.info("uploads.received", filename=file.filename, size=size)
    return {"filename": file.filename, "size": size, "sha256": digest.hexdigest()}
