"""Libraries' log records come out in netwatch's format, and a request the
HTTP server could not parse is no error with a traceback."""

from __future__ import annotations

import io
import json
import logging

import pytest
from aiohttp.http_exceptions import LineTooLong

from netwatch.config import LogSettings
from netwatch.logs import configure_logging


@pytest.fixture
def stream():  # type: ignore[no-untyped-def]
    """A stream configured as the log; the root logger restored after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    output = io.StringIO()
    yield output
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def bad_request() -> None:
    try:
        raise LineTooLong(b"/aaaa", "8190")
    except LineTooLong as exc:
        logging.getLogger("aiohttp.server").exception(
            "Error handling request from %s", "127.0.0.1", exc_info=exc
        )


def test_a_librarys_record_is_one_json_line(stream):
    configure_logging(LogSettings(format="json"), stream)

    logging.getLogger("asyncio").error("Task was destroyed but it is pending!")

    (line,) = lines(stream)
    assert line["event"] == "Task was destroyed but it is pending!"
    assert line["logger"] == "asyncio"
    assert line["level"] == "error"
    assert "timestamp" in line


def test_a_request_that_cannot_be_parsed_is_silent_at_info(stream):
    configure_logging(LogSettings(format="json", level="info"), stream)

    bad_request()

    assert stream.getvalue() == ""


def test_at_debug_it_is_one_line_with_the_reason_and_no_traceback(stream):
    configure_logging(LogSettings(format="json", level="debug"), stream)

    bad_request()

    (line,) = lines(stream)
    assert line["event"] == "http.bad_request"
    assert line["level"] == "debug"
    assert "8190" in line["reason"]
    assert "exception" not in line
