"""Logging setup: structlog, JSON when not on a terminal, readable on one.

Event names read `area.what_happened`; fields come from one snake_case
vocabulary (`src`, `dst`, `probe`, `reason`, `container`, ...).
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

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

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *exceptions,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
