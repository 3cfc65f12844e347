"""The samples file: one JSON object per line, one file per route and method.

A sample is one request as the gateway saw it (already redacted: no cookies, tokens or
passwords) and the response the client got. ``gateway record`` and ``[routes.record]`` write
them; ``gateway parity``, ``gateway scaffold`` (response models) and the merged OpenAPI
document (response schemas) read them::

    path = sample_path(settings.record.dir, "GET", "/api/books/{book_id:int}")
    # var/samples/get-api-books-book_id-int.jsonl
    for sample in read_samples(path):
        sample.request.path, sample.response.status, sample.response.json()

JSON bodies are stored as JSON values, other text as text, anything else as base64; a body
longer than the recording limit is cut and marked ``truncated`` (a replay skips it).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

#: Bumped when a field changes meaning; readers refuse versions they do not know.
FORMAT_VERSION = 1

Encoding = Literal["json", "text", "base64"]


class SampleFileError(ValueError):
    """A samples file that cannot be read; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Body:
    """A message body as recorded: a JSON value, text or base64, possibly cut short."""

    value: Any = None
    encoding: Encoding | None = None
    truncated: bool = False

    @classmethod
    def of(cls, raw: bytes, content_type: str | None, *, limit: int) -> Body:
        """Keep at most ``limit`` bytes of ``raw``, as JSON when it is complete JSON."""
        if not raw:
            return cls()
        truncated = len(raw) > limit
        kept = raw[:limit]
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if not truncated and (media == "application/json" or media.endswith("+json")):
            try:
                return cls(json.loads(kept), "json")
            except ValueError:
                pass  # not JSON after all: kept as text below
        try:
            return cls(kept.decode("utf-8"), "text", truncated)
        except UnicodeDecodeError:
            return cls(base64.b64encode(kept).decode("ascii"), "base64", truncated)

    def raw(self) -> bytes:
        """The bytes to send again (compact JSON for a JSON body)."""
        if self.encoding is None:
            return b""
        if self.encoding == "json":
            return json.dumps(self.value, separators=(",", ":"), ensure_ascii=False).encode()
        if self.encoding == "text":
            return str(self.value).encode("utf-8")
        return base64.b64decode(self.value)


@dataclass(frozen=True, slots=True)
class RecordedIdentity:
    """Who the gateway had verified; a replay injects the same identity into both sides."""

    subject: str | None
    roles: tuple[str, ...] = ()
    method: str = "anonymous"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    #: The canonical path, without the query.
    path: str
    #: The raw query string (``q=tolkien&page=2``), as sent.
    query: str = ""
    #: ``[name, value]`` pairs, lower-case names, in order, after redaction.
    headers: tuple[tuple[str, str], ...] = ()
    body: Body = field(default_factory=Body)
    identity: RecordedIdentity = field(default_factory=lambda: RecordedIdentity(None))


@dataclass(frozen=True, slots=True)
class RecordedResponse:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: Body = field(default_factory=Body)
    #: Who answered the client: ``legacy`` or a service name.
    backend: str = "legacy"

    def json(self) -> Any:
        """The JSON body, or ``None`` when the body is not (complete) JSON."""
        return self.body.value if self.body.encoding == "json" else None


@dataclass(frozen=True, slots=True)
class Sample:
    #: ``GET /api/books/{book_id:int}``: the route and method the sample belongs to.
    route: str
    request: RecordedRequest
    response: RecordedResponse
    #: ISO 8601, UTC.
    recorded_at: str = ""

    def to_line(self) -> str:
        data = {"v": FORMAT_VERSION, **asdict(self)}
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_line(cls, line: str) -> Sample:
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("a sample is a JSON object")
        version = data.pop("v", None)
        if version != FORMAT_VERSION:
            raise ValueError(f"unknown sample format version {version!r} (this gateway reads 1)")
        request, response = data["request"], data["response"]
        return cls(
            route=data["route"],
            recorded_at=data.get("recorded_at", ""),
            request=RecordedRequest(
                method=request["method"],
                path=request["path"],
                query=request.get("query", ""),
                headers=_pairs(request.get("headers", ())),
                body=Body(**request.get("body", {})),
                identity=RecordedIdentity(
                    subject=request.get("identity", {}).get("subject"),
                    roles=tuple(request.get("identity", {}).get("roles", ())),
                    method=request.get("identity", {}).get("method", "anonymous"),
                ),
            ),
            response=RecordedResponse(
                status=response["status"],
                headers=_pairs(response.get("headers", ())),
                body=Body(**response.get("body", {})),
                backend=response.get("backend", "legacy"),
            ),
        )


def _pairs(items: Iterable[Any]) -> tuple[tuple[str, str], ...]:
    return tuple((str(name), str(value)) for name, value in items)


def sample_file_name(method: str, template: str) -> str:
    """``GET /api/books/{book_id:int}`` → ``get-api-books-book_id-int.jsonl``."""
    slug = re.sub(r"[^A-Za-z0-9_]+", "-", template).strip("-") or "root"
    return f"{method.lower()}-{slug}.jsonl"


def sample_path(directory: Path, method: str, template: str) -> Path:
    return directory / sample_file_name(method, template)


def iter_samples(path: Path) -> Iterator[Sample]:
    """The samples in ``path``, in order; ``SampleFileError`` names the file and bad line."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                yield Sample.from_line(line)
            except (ValueError, KeyError, TypeError) as exc:
                raise SampleFileError(f"{path}:{number}: not a sample: {exc}") from exc


def read_samples(path: Path) -> list[Sample]:
    """Every sample in ``path``; an empty list when the file does not exist yet."""
    if not path.exists():
        return []
    return list(iter_samples(path))


def append_samples(path: Path, samples: Iterable[Sample]) -> None:
    """Append whole lines (one ``write`` per batch), creating the folder when needed."""
    text = "".join(sample.to_line() + "\n" for sample in samples)
    if not text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(text)
