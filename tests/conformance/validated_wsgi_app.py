"""A raw WSGI app, wrapped in ``wsgiref.validate.validator``, served as a gateway's legacy app.

The validator sits between the gateway's adapter and this app and raises ``AssertionError`` on
any PEP 3333 violation by either side (environ keys and types, the ``wsgi.input`` methods'
arguments and results, ``start_response``, ``write()``, iteration after ``close()``); an
iterable the server never closes is reported on stderr when it is collected. Both land in the
gateway's log, which the tests read. The app uses every part of PEP 3333 the adapter implements:

``/environ...``      the CGI keys and ``wsgi.*`` flags it got, as JSON
``/input?ops=...``   reads ``wsgi.input`` with the listed calls (``run_ops``) and answers with
                     what each returned, and which stream class the server gave it
``/chunks``          ``count`` chunks of ``size`` bytes (``chunk()``), optionally with a
                     ``Content-Length``; an iterable with its own ``close()``
``/write``           the ``write()`` callable, then an iterable; ``/write-only`` returns ``[]``
``/exc-info``        a 200 started, then replaced by a 500 through ``start_response(...,
                     exc_info)`` before any body byte
``/exc-info-late``   the same after the first body byte: ``start_response`` must re-raise
``/endless``         chunks until the client goes away

Every iterable it returns writes ``conformance: closed TAG`` to ``wsgi.errors`` in ``close()``
(``TAG`` from the query string), so a test knows when the server has closed it.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs
from wsgiref.validate import validator

StartResponse = Callable[..., Callable[[bytes], None]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def create_app() -> WSGIApp:
    """The gateway's ``legacy.app``: a factory, since the validator's ``lint_app(*args)`` does not
    name its parameters ``(environ, start_response)``."""
    return validator(application)


def chunk(index: int, size: int) -> bytes:
    """Chunk ``index`` of a ``/chunks`` response: every chunk differs, so order is checked too."""
    return (b"%07d\n" % index * (size // 8 + 1))[:size]


def run_ops(stream: Any, server_stream: Any, ops: list[str]) -> list[Any]:
    """Call ``stream``'s reading methods as ``ops`` say (``read:10``, ``readline``,
    ``readlines:None``, ``iter``, ...); ``iter-server`` and ``next:N`` iterate ``server_stream``
    itself (through the validator, iteration is its own ``readline()`` loop). The tests run the
    same ops on ``io.BytesIO`` and expect the same answers."""
    results: list[Any] = []
    for op in ops:
        name, _, raw = op.partition(":")
        args: tuple[Any, ...] = () if not raw else (None if raw == "None" else int(raw),)
        if name in ("read", "readline"):
            results.append(_text(getattr(stream, name)(*args)))
        elif name == "readlines":
            results.append([_text(line) for line in stream.readlines(*args)])
        elif name == "iter":
            results.append([_text(line) for line in stream])
        elif name == "iter-server":
            results.append([_text(line) for line in server_stream])
        elif name == "next":
            results.append([_text(line) for line in itertools.islice(server_stream, *args)])
        else:
            raise ValueError(f"unknown op {op!r}")
    return results


def _text(data: bytes) -> str:
    assert type(data) is bytes, type(data)
    return data.decode("latin-1")


class Closing:
    """An iterable with its own ``close()``, which says so on ``wsgi.errors``."""

    def __init__(self, environ: dict[str, Any], chunks: Iterable[bytes]) -> None:
        self._errors = environ["wsgi.errors"]
        self._chunks = chunks
        self._tag = _query(environ).get("tag", "-")
        self.closes = 0

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def close(self) -> None:
        self.closes += 1
        self._errors.write(f"conformance: closed {self._tag} ({self.closes})\n")
        self._errors.flush()


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if path.startswith("/environ"):
        return _environ(environ, start_response)
    handler = _ROUTES.get(path)
    if handler is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return Closing(environ, [b"no such page"])
    return handler(environ, start_response)


def _environ(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    shown = {key: value for key, value in environ.items() if "." not in key}
    for key in ("wsgi.version", "wsgi.url_scheme", "wsgi.multithread", "wsgi.multiprocess"):
        shown[key] = environ[key]
    shown["wsgi.run_once"] = environ["wsgi.run_once"]
    shown["wsgi.input_terminated"] = environ.get("wsgi.input_terminated")
    return _json(environ, start_response, shown)


def _input(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    wrapped = environ["wsgi.input"]  # the validator's InputWrapper
    server_stream = wrapped.input
    ops = [op for op in _query(environ).get("ops", "").split(",") if op]
    results = run_ops(wrapped, server_stream, ops)
    return _json(
        environ, start_response, {"stream": type(server_stream).__name__, "results": results}
    )


def _chunks(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    query = _query(environ)
    count, size = int(query.get("count", "10")), int(query.get("size", "100"))
    headers = [("Content-Type", "application/octet-stream")]
    if query.get("length"):
        headers.append(("Content-Length", str(count * size)))
    start_response("200 OK", headers)
    return Closing(environ, (chunk(index, size) for index in range(count)))


def _write(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"written ")
    write(b"")
    write(b"by write(), ")
    return Closing(environ, [b"", b"then ", b"", b"iterated"])


def _write_only(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    body = b"all of it through write()"
    write = start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    for index in range(0, len(body), 5):
        write(body[index : index + 5])
    return []


def _exc_info(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Doomed", "yes")])
    try:
        raise LookupError("the page failed after start_response")
    except LookupError:
        start_response(
            "500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info()
        )
    return Closing(environ, [b"the app's own error page"])


class LateFailure(Exception):
    """Raised by ``/exc-info-late`` after its first body byte."""


def _exc_info_late(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body() -> Iterator[bytes]:
        yield b"first"
        try:
            raise LateFailure("after the first body byte")
        except LateFailure:
            # PEP 3333: the headers are out, so start_response must raise (this exception).
            start_response(
                "500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info()
            )
        yield b"never sent"

    return Closing(environ, body())


def _endless(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return Closing(environ, (chunk(index, 16384) for index in itertools.count()))


def _json(environ: dict[str, Any], start_response: StartResponse, data: Any) -> Iterable[bytes]:
    body = json.dumps(data).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return Closing(environ, [body])


def _query(environ: dict[str, Any]) -> dict[str, str]:
    return {key: values[-1] for key, values in parse_qs(environ["QUERY_STRING"]).items()}


_ROUTES: dict[str, WSGIApp] = {
    "/input": _input,
    "/chunks": _chunks,
    "/write": _write,
    "/write-only": _write_only,
    "/exc-info": _exc_info,
    "/exc-info-late": _exc_info_late,
    "/endless": _endless,
}
