"""The vendored files are byte for byte what upstream released (``vendor/README.md``).

Each file's git blob id, as ``git ls-tree`` lists it at the upstream tag; a copy that someone
edits, reformats or converts the line endings of no longer matches.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

VENDOR = Path(__file__).resolve().parent / "vendor"

#: vendored path -> git blob id at the upstream tag (pallets/flask 3.1.3, examples/tutorial/;
#: abersheeran/a2wsgi v1.10.10).
UPSTREAM_BLOBS = {
    "flaskr/LICENSE.txt": "9d227a0cc43c3268d15722b763bd94ad298645a1",
    "flaskr/flaskr/__init__.py": "ab96e719eefbcfd0348b24b7b58e1fb7d4417a56",
    "flaskr/flaskr/auth.py": "34c03a204f03fdfb339640b788044174e7487eb7",
    "flaskr/flaskr/blog.py": "be0d92c4354c9ffa4fa10d970995d735c2c71209",
    "flaskr/flaskr/db.py": "dec22fde2d8fb4ebb0be5c03982d0f0ee69ccf17",
    "flaskr/flaskr/schema.sql": "dd4c86600a4b6d022f3c7dbbd97b1d4ca78e0fdd",
    "flaskr/flaskr/static/style.css": "2f1f4d0c3c57c4916577e3acc4b9d3f1d1e6f23c",
    "flaskr/flaskr/templates/auth/login.html": "b326b5a6b8e469710b20be8487956757ffc8ac9c",
    "flaskr/flaskr/templates/auth/register.html": "4320e17e8499856b22b22d5cfb830ab0378a378b",
    "flaskr/flaskr/templates/base.html": "f09e92687c7acf29f0068ae485859dca43bfb5c3",
    "flaskr/flaskr/templates/blog/create.html": "88e31e44bdc255d905e2e6b4a040c979d7e48221",
    "flaskr/flaskr/templates/blog/index.html": "3481b8e18d6022f3c0c633c0c721824cc398f79e",
    "flaskr/flaskr/templates/blog/update.html": "2c405e63038ec6693ca7fcbe8af8a53150c0d3e9",
    "flaskr/tests/data.sql": "9b68006510ba310c37f43d7f9ecd5588d2707a7e",
    "a2wsgi/LICENSE": "95633a0f62bab655f4e9dd7b7e2d11ff13cc248c",
    "a2wsgi/test_wsgi.py": "677e43abcfd0f2bfabe74053ff524618f668dd05",
}


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@pytest.mark.parametrize(("path", "blob"), UPSTREAM_BLOBS.items(), ids=list(UPSTREAM_BLOBS))
def test_vendored_file_is_upstreams(path: str, blob: str) -> None:
    assert git_blob_id((VENDOR / path).read_bytes()) == blob


def test_nothing_else_is_vendored() -> None:
    files = {
        path.relative_to(VENDOR).as_posix()
        for path in VENDOR.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert files == {*UPSTREAM_BLOBS, "README.md"}
