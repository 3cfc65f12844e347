"""One WSGI call and the response it hands over: the part of the legacy adapter that does not
care where the app runs (a thread of the gateway, or a worker process).

A ``ResponseWriter`` is the ``start_response`` a WSGI app gets; it checks the status and headers
(a bad one is the app's error, a JSON 500, not a connection the server drops), cuts a body longer
than its ``Content-Length``, and hands the messages ``(START, status, headers)``, ``(BODY,
chunk)`` and ``(END,)`` to its ``_post``, which subclasses implement::

    run_wsgi(wsgi_app, environ, writer)   # iterate, close() always, report errors
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, TypeAlias

import structlog

ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse: TypeAlias = Callable[..., Callable[[bytes], None]]
WSGIApp: TypeAlias = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
#: PEP 3333: "200 OK" (a reason phrase is usual, not required).
_STATUS = re.compile(r"^[1-9][0-9]{2}(?: [^\r\n]*)?$")
#: A header name (RFC 9110 token); values must not carry CR, LF or NUL (response splitting).
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_FORBIDDEN_IN_VALUE = re.compile(r"[\r\n\x00]")

#: The kinds of message a response is made of: ``(START, status, headers)``, ``(BODY, chunk)``,
#: ``(END,)``.
START, BODY, END = 0, 1, 2

log = structlog.get_logger("gateway.legacy")


class ClientDisconnected(Exception):
    """Raised inside the WSGI iteration when the client has gone away."""


class ResponseWriter:
    """``start_response``, the ``write()`` callable and the end of one WSGI response."""

    def __init__(self) -> None:
        self._start: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self._headers_sent = False
        #: Body bytes the declared Content-Length still allows (``None``: not declared).
        self._remaining: int | None = None
        self._overran = False

    def _post(self, messages: list[tuple[Any, ...]], size: int, done: bool = False) -> None:
        """Hand messages over (``size``: their body bytes); raise ``ClientDisconnected`` when
        the client is gone."""
        raise NotImplementedError

    def fail(self, exc: BaseException) -> None:
        """The app raised (before or during its response)."""
        raise NotImplementedError

    def start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
    ) -> Callable[[bytes], None]:
        if exc_info is not None:
            if self._headers_sent:
                # PEP 3333: too late to change the response; let the error propagate.
                raise exc_info[1].with_traceback(exc_info[2])
        elif self._start is not None:
            raise RuntimeError("start_response() called twice without exc_info")
        # Checked here, in the app's thread, so a bad status or header is the app's error (the
        # client gets the gateway's JSON 500) rather than the server's, which would drop the
        # connection once it saw the start of the response.
        if not _STATUS.match(status):
            raise ValueError(f"invalid WSGI status {status[:40]!r}")
        code = int(status[:3])
        encoded = []
        remaining = None
        for name, value in headers:
            if not _TOKEN.match(name) or _FORBIDDEN_IN_VALUE.search(value):
                raise ValueError(f"invalid WSGI response header {name[:40]!r}")
            raw_name = name.lower().encode("latin-1")
            raw_value = value.strip().encode("latin-1")
            if raw_name == b"content-length" and raw_value.isdigit():
                remaining = int(raw_value)
            encoded.append((raw_name, raw_value))
        self._start = (code, encoded)
        self._remaining = remaining
        return self.push_body

    def push_body(self, chunk: bytes) -> None:
        """Hand over a body chunk (also the WSGI ``write()`` callable)."""
        if not chunk:
            return
        if self._start is None:
            raise RuntimeError("the WSGI app sent body bytes before calling start_response()")
        remaining = self._remaining
        if remaining is not None:
            if len(chunk) > remaining:
                # More than its Content-Length: the client would read the rest as the start of
                # the next response. Cut to the declared length, as gunicorn does, and say so.
                if not self._overran:
                    self._overran = True
                    log.warning("legacy.body_longer_than_content_length")
                chunk = chunk[:remaining]
                if not chunk:
                    return
            self._remaining = remaining - len(chunk)
        if self._headers_sent:
            self._post([(BODY, chunk)], len(chunk))
        else:
            self._headers_sent = True
            self._post([(START, *self._start), (BODY, chunk)], len(chunk))

    def finish(self) -> None:
        if self._start is None:
            raise RuntimeError("the WSGI app returned without calling start_response()")
        end: list[tuple[Any, ...]] = [(END,)]
        if not self._headers_sent:
            self._headers_sent = True
            end.insert(0, (START, *self._start))
        self._post(end, 0, done=True)


def run_wsgi(app: WSGIApp, environ: dict[str, Any], writer: ResponseWriter) -> None:
    """One WSGI call, start to end (in the thread or process that runs the app)."""
    try:
        iterable = app(environ, writer.start_response)
        try:
            for chunk in iterable:
                if chunk:
                    writer.push_body(chunk)
            writer.finish()
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
    except ClientDisconnected:
        pass
    except BaseException as exc:
        writer.fail(exc)
