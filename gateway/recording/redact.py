"""What a recorded sample may keep: credentials out, secret-looking fields masked, size bounded.

The recorder runs every captured exchange through ``Redactor`` before it is written::

    redactor = Redactor(api_key_header="X-API-Key")
    headers = redactor.request_headers([(b"cookie", b"session=..."), (b"accept", b"*/*")])
    # (("accept", "*/*"),)
    body = redactor.body(b'{"username": "alice", "password": "wonderland"}',
                         "application/json", limit=65536)
    # Body({"username": "alice", "password": "[redacted]"}, "json")

Dropped outright: ``Cookie``, ``Authorization``, ``Proxy-Authorization``, the configured API-key
header (requests) and ``Set-Cookie`` (responses). Masked (the value becomes ``[redacted]``): JSON
fields and form fields (url-encoded bodies and the query string) whose name looks secret
(``password``, ``token``, ``secret``, ``session``, ... the shadow report's own rule,
``gateway.shadow.compare.looks_secret``), and any string shaped like a JWT or a ``Bearer``
credential. A multipart body, and any body longer than the limit, keeps no content at all: a
cut-off JSON document or form cannot be parsed, so nothing in it could be masked; the sample is
marked ``truncated`` and a replay skips it.

Bluntly: this is a best effort by name and shape. A secret under an innocent name in free text
(an HTML page, a CSV report, a ``note`` field) is recorded as it is. Keep ``[routes.record]``
off for routes that answer with secrets in such shapes, and treat the samples folder as data
you would not publish.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from gateway.recording.samples import Body
from gateway.shadow.compare import is_credential, looks_secret

REDACTED = "[redacted]"
_REQUEST_CREDENTIALS = frozenset({"cookie", "authorization", "proxy-authorization"})
_RESPONSE_CREDENTIALS = frozenset({"set-cookie"})
_FORM = "application/x-www-form-urlencoded"


class Redactor:
    def __init__(self, *, api_key_header: str | None = None) -> None:
        drop = set(_REQUEST_CREDENTIALS)
        if api_key_header:
            drop.add(api_key_header.lower())
        self._request_drop = frozenset(drop)

    def request_headers(self, raw: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
        return _headers(raw, self._request_drop)

    def response_headers(self, raw: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
        return _headers(raw, _RESPONSE_CREDENTIALS)

    def query(self, query: str) -> str:
        """The query string with secret-looking parameters masked (unchanged when none is)."""
        if not query:
            return query
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = [(name, _masked_field(name, value)) for name, value in pairs]
        return query if masked == pairs else urlencode(masked)

    def body(self, raw: bytes, content_type: str | None, *, limit: int) -> Body:
        """``raw`` as a recorded body: masked when JSON or a form, nothing kept when it is
        multipart or longer than ``limit``."""
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if len(raw) > limit or media.startswith("multipart/"):
            # Nothing is kept (limit 0): see the module docstring.
            return Body.of(raw, content_type, limit=0)
        body = Body.of(raw, content_type, limit=limit)
        if body.encoding == "json":
            return Body(mask_json(body.value), "json")
        if body.encoding == "text" and media == _FORM:
            return Body(self.query(str(body.value)), "text")
        if body.encoding == "text" and is_credential(str(body.value)):
            return Body(REDACTED, "text")
        return body


def mask_json(value: Any, secret: bool = False) -> Any:
    """``value`` with every value under a secret-looking key, and every credential-shaped
    string, replaced by ``[redacted]``."""
    if isinstance(value, dict):
        return {k: mask_json(v, secret or looks_secret(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_json(item, secret) for item in value]
    if secret and value is not None:
        return REDACTED
    if isinstance(value, str) and is_credential(value):
        return REDACTED
    return value


def _masked_field(name: str, value: str) -> str:
    return REDACTED if looks_secret(name) or is_credential(value) else value


def _headers(
    raw: Iterable[tuple[bytes, bytes]], drop: frozenset[str]
) -> tuple[tuple[str, str], ...]:
    kept = []
    for name_bytes, value_bytes in raw:
        name = name_bytes.decode("latin-1").lower()
        if name in drop:
            continue
        value = value_bytes.decode("latin-1")
        kept.append((name, REDACTED if looks_secret(name) or is_credential(value) else value))
    return tuple(kept)
