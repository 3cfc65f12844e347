"""The access line's direct JSON path writes what structlog's processor chain would write."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
import structlog
from structlog.testing import capture_logs

from gateway.log import configure_logging, flush_logs, write_access

FIELDS = {
    "request_id": "req-1",
    "method": "GET",
    "path": "/api/books",
    "route": "/api/books",
    "backend": "catalog",
    "status": 200,
    "duration_ms": 1.25,
    "client": "127.0.0.1:5000",
    "user": "alice",
    "auth": "session",
    "flag": "catalog-books",
}
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    yield
    # What a default gateway configures; later tests expect info lines to be kept.
    configure_logging(format="console", level="info")


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging(format="json", level="info", stream=out)
    yield out
    structlog.contextvars.clear_contextvars()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    flush_logs()
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_direct_line_matches_the_processor_chain(stream: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(request_id="req-1", tenant="acme")
    logger = structlog.get_logger("gateway.access").bind()
    write_access(logger, dict(FIELDS))
    logger.info("request", **FIELDS)  # the processor chain, for comparison
    direct, chained = lines(stream)
    assert list(direct) == list(chained)  # the same keys in the same order
    assert {k: v for k, v in direct.items() if k != "timestamp"} == {
        k: v for k, v in chained.items() if k != "timestamp"
    }
    assert direct["tenant"] == "acme"
    assert ISO_UTC.match(str(direct["timestamp"])), direct["timestamp"]


def test_direct_line_is_stamped_when_written_and_rendered_later(
    stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.log.time.time", lambda: 1_700_000_000.5)
    write_access(structlog.get_logger("gateway.access").bind(), dict(FIELDS))
    monkeypatch.undo()  # the flush, later, sees another clock: the line keeps its own time
    assert stream.getvalue() == ""  # queued, not yet rendered
    (line,) = lines(stream)
    assert line["timestamp"] == "2023-11-14T22:13:20.500000Z"
    assert line["request_id"] == "req-1"


def test_a_line_that_cannot_be_rendered_says_so(stream: io.StringIO) -> None:
    logger = structlog.get_logger("gateway.access").bind()
    write_access(logger, {**FIELDS, "odd": {1: "a non-string key orjson refuses"}})
    write_access(logger, dict(FIELDS))
    failed, fine = lines(stream)
    assert failed["event"] == "log.render_failed"
    assert failed["level"] == "error"
    assert fine["event"] == "request"


def test_capture_logs_still_sees_the_access_line(stream: io.StringIO) -> None:
    logger = structlog.get_logger("gateway.access").bind()
    with capture_logs() as captured:
        write_access(logger, dict(FIELDS))
    assert captured == [{**FIELDS, "event": "request", "log_level": "info"}]
    assert lines(stream) == []


@pytest.mark.parametrize(("format", "level"), [("console", "info"), ("json", "warning")])
def test_other_pipelines_go_through_structlog(format: str, level: str) -> None:
    out = io.StringIO()
    configure_logging(format=format, level=level, stream=out)  # type: ignore[arg-type]
    write_access(structlog.get_logger("gateway.access").bind(), dict(FIELDS))
    flush_logs()
    text = out.getvalue()
    if level == "warning":
        assert text == ""  # an info line below the configured level is dropped
    else:
        assert "request" in text
        assert not text.startswith("{")  # rendered by the console renderer


def test_console_lines_escape_control_characters() -> None:
    """As the JSON renderer does: ESC from a request must not reach an operator's terminal."""
    out = io.StringIO()
    configure_logging(format="console", level="info", stream=out)
    structlog.get_logger("gateway.flags").info("flags.override_ignored", value="\x1b[2Jnew\r\n")
    logging.getLogger("flask.app").warning("user said \x1b]0;owned\x07")
    flush_logs()
    text = out.getvalue()
    assert not {"\x1b", "\x07", "\r"} & set(text)
    assert "value=\\x1b[2Jnew\\x0d\\x0a" in text
    assert "user said \\x1b]0;owned\\x07" in text
    assert text.count("\n") == 2  # one line each
