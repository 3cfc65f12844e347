"""One logging pipeline for the gateway, the Flask app, the FastAPI services and uvicorn.

``configure_logging`` runs once, first thing in ``create_app`` (before the Flask app is built, so
Flask finds a handler and does not add its own). structlog events and stdlib records (Flask's
``app.logger``, werkzeug, uvicorn) go through the same processors and the same renderer and are
written through one buffered sink (``gateway.log_sink``), so a line is never torn::

    configure_logging(format="json", level="info")
    structlog.get_logger().info("hello", user="alice")

Every line carries the request id of the request it was written for: the request-context
middleware binds it with ``structlog.contextvars``, and the legacy adapter runs each WSGI call in
a copy of that context, so Flask's handler threads see it too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from typing import Any, Literal, NoReturn, TextIO

import orjson
import structlog
from structlog.typing import Processor

from gateway.log_sink import LineSink, SinkLoggerFactory

LogFormat = Literal["console", "json"]

#: Loggers that other libraries set up with handlers of their own; the gateway routes them
#: through its pipeline instead.
_ADOPTED_LOGGERS = ("uvicorn", "uvicorn.error", "gunicorn.error", "werkzeug", "flask.app")
#: The gateway writes the one access line per request; uvicorn's (and gunicorn's) would be a
#: second, less informative copy.
_SILENCED_LOGGERS = ("uvicorn.access", "gunicorn.access")


class _PipelineHandler(logging.Handler):
    """A stdlib handler that renders with structlog and writes to the same line sink."""

    def __init__(self, sink: LineSink, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # Written at once: stdlib records are uvicorn's life-cycle lines (some come after
            # the last chance to flush, as uvicorn re-raises SIGTERM) and the apps' own logging.
            self.sink.write(self.format(record), urgent=True)
        except Exception:  # the logging module's own contract: never raise from emit
            self.handleError(record)


def _dumps(event: Any, **_: Any) -> str:
    # orjson: about five times the stdlib encoder's speed, and one line is written per request.
    return orjson.dumps(event, default=repr).decode()


def _drop_color_message(
    _logger: object, _method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    # uvicorn passes an ANSI-coloured copy of its message as an "extra"; one message is enough.
    event.pop("color_message", None)
    return event


#: C0 and C1 control characters (ESC among them), and DEL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape_controls(
    _logger: object, _method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Write control characters in string values as ``\x1b``, as the JSON renderer escapes
    them: a request can carry ESC sequences (a header value, a logged parameter), and raw
    ones would rewrite an operator's terminal or forge a log line."""
    for key, value in event.items():
        if isinstance(value, str) and _CONTROL.search(value):
            event[key] = _CONTROL.sub(_escaped, value)
    return event


def _escaped(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


_current_sink: LineSink | None = None


class _DirectJSON:
    """The gateway's JSON pipeline, while structlog still runs it (see ``write_access``)."""

    __slots__ = ("processors", "sink")

    def __init__(self, processors: list[Processor], sink: LineSink) -> None:
        # A copy: structlog.testing.capture_logs swaps the contents of the configured list,
        # keeping the list itself.
        self.processors = list(processors)
        self.sink = sink

    def active(self) -> bool:
        configured: list[Processor] = structlog.get_config()["processors"]
        return configured == self.processors


_direct_json: _DirectJSON | None = None
#: The last second formatted, and its text: one tuple, replaced whole (sinks render on their
#: own threads).
_second: tuple[int, str] = (-1, "")


def _utc_timestamp(now: float) -> str:
    """What ``TimeStamper(fmt="iso", utc=True)`` writes for ``now`` (``time.time()``), with the
    date formatted once a second."""
    global _second
    second = int(now)
    cached, text = _second
    if second != cached:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = (second, text)
    micro = int((now - second) * 1_000_000)
    return f"{text}.{micro:06d}Z" if micro else f"{text}Z"


def _render_access(fields: dict[str, Any]) -> str:
    """The access line from its queued fields (``timestamp`` still the raw ``time.time()``)."""
    try:
        fields["timestamp"] = _utc_timestamp(fields["timestamp"])
        return _dumps(fields)
    except Exception as exc:  # rendered on the flusher thread, which must not die of it
        return _dumps({"event": "log.render_failed", "error": repr(exc), "level": "error"})


def write_access(logger: structlog.typing.FilteringBoundLogger, fields: dict[str, Any]) -> None:
    """Write the access line: ``logger.info("request", **fields)``, in fewer microseconds.

    One line per request makes the processor chain a measurable share of the gateway's own cost.
    While structlog runs the JSON pipeline ``configure_logging`` set up (not, say, inside
    ``structlog.testing.capture_logs``), the line is rendered here with the same keys in the
    same order as the chain would give: the fields, ``event``, any bound context variables not
    already given, ``level``, ``timestamp``. Only the fields are gathered here; the JSON is
    rendered when the sink writes the line (``LineSink.write_later``), off the request path.
    """
    direct = _direct_json
    if direct is None or not direct.active():
        logger.info("request", **fields)
        return
    fields["event"] = "request"
    for key, value in structlog.contextvars.get_contextvars().items():
        fields.setdefault(key, value)
    fields["level"] = "info"
    fields["timestamp"] = time.time()  # formatted with the rest, by _render_access
    direct.sink.write_later(_render_access, fields)


def flush_logs() -> None:
    """Write out buffered lines now (the gateway calls it at the end of its lifespan)."""
    if _current_sink is not None:
        _current_sink.flush()


def exit_now(status: int) -> NoReturn:
    """Write out buffered log lines and standard streams, then end the process at once
    (``os._exit``), skipping an interpreter shutdown that would wait for other threads."""
    flush_logs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


def configure_logging(*, format: LogFormat, level: str, stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger to render the same way to ``stream``."""
    stream = stream if stream is not None else sys.stdout
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level {level!r}")

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: list[Processor]
    if format == "json":
        renderer = [
            # Frames without locals: a local may hold a password or a token.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            structlog.processors.JSONRenderer(serializer=_dumps),
        ]
    else:
        renderer = [_escape_controls, structlog.dev.ConsoleRenderer(colors=stream.isatty())]

    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _PipelineHandler):
            root.removeHandler(handler)
            handler.sink.close()
    sink = LineSink(stream)
    global _current_sink
    _current_sink = sink

    processors: list[Processor] = [*shared, structlog.processors.StackInfoRenderer(), *renderer]
    global _direct_json
    direct = format == "json" and numeric_level <= logging.INFO
    _direct_json = _DirectJSON(processors, sink) if direct else None
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=SinkLoggerFactory(sink),
        # Not cached: tests reconfigure (and capture_logs) freely. The hot path (the access
        # line) binds a concrete logger once per app instead of going through the lazy proxy.
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *shared,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
            _drop_color_message,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer],
    )
    root.addHandler(_PipelineHandler(sink, formatter))
    root.setLevel(numeric_level)

    for name in _ADOPTED_LOGGERS:
        adopted = logging.getLogger(name)
        adopted.handlers.clear()
        adopted.propagate = True
    for name in _SILENCED_LOGGERS:
        silenced = logging.getLogger(name)
        silenced.handlers.clear()
        silenced.propagate = False
        silenced.disabled = True
