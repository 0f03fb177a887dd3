"""Logging setup: structlog, JSON when not on a terminal, readable on one.

Event names read `area.what_happened`; fields come from one snake_case
vocabulary (`src`, `dst`, `probe`, `reason`, `container`, ...).
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog
from aiohttp.http_exceptions import HttpProcessingError

from netwatch.config import LogSettings


def configure_logging(settings: LogSettings, stream: TextIO = sys.stderr) -> None:
    as_json = settings.format == "json" or (
        settings.format == "auto" and not stream.isatty()
    )
    renderer: structlog.typing.Processor
    exceptions: list[structlog.typing.Processor] = []
    if as_json:
        renderer = structlog.processors.JSONRenderer()
        exceptions = [structlog.processors.dict_tracebacks]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    level = logging.getLevelNamesMapping()[settings.level.upper()]
    stamped: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            *stamped,
            *exceptions,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    _route_standard_logging(stream, level, stamped, [*exceptions, renderer])


def _route_standard_logging(
    stream: TextIO,
    level: int,
    stamped: list[structlog.typing.Processor],
    rendering: list[structlog.typing.Processor],
) -> None:
    """Libraries' own log records (aiohttp's, asyncio's) come out as
    netwatch's do: one JSON object a line, or the console's format."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(allow=["reason"]),
                *stamped,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *rendering,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
    setattr(handler, _OURS, True)
    root.addHandler(handler)
    root.setLevel(level)
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _ClientFaults) for f in server.filters):
        server.addFilter(_ClientFaults())


_OURS = "_netwatch_handler"


class _ClientFaults(logging.Filter):
    """A request the HTTP server could not parse (an 8 KB line, a bad
    header, TLS spoken to the plain port) is the client's fault: answered
    400, and noted in one line at debug level, not as an error with a
    traceback that any client could fill the log with."""

    def filter(self, record: logging.LogRecord) -> bool:
        fault = record.exc_info[1] if record.exc_info else None
        if not isinstance(fault, HttpProcessingError):
            return True
        record.msg, record.args = "http.bad_request", ()
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.exc_info = record.exc_text = None
        record.__dict__["reason"] = fault.message
        return logging.getLogger().isEnabledFor(logging.DEBUG)
