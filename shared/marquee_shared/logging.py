"""structlog set up once per process: contextvars first, ISO timestamps, JSON off a TTY.

Libraries log through the standard library (uvicorn, faststream, httpx). Their records go
through structlog's ``ProcessorFormatter`` with the same processors and renderer, so every
line a service writes is one format, with the request or event id bound in the contextvars
where one is known. A stdlib line has the keys of a structlog line plus ``logger``, the
library's logger name.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO, cast

import structlog

# Loggers that libraries give their own handlers (plain text, some on stdout) and stop from
# propagating: uvicorn's dictConfig runs before the app factory, faststream's at import.
_LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "faststream")
_BROKER_LOGGER = "faststream.access.redis"


class _Stderr:
    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _StructlogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler configure_logging installs (and replaces when called again)."""


def configure_logging(
    level: str = "INFO", fmt: Literal["auto", "json", "console"] = "auto"
) -> None:
    use_console = sys.stderr.isatty() if fmt == "auto" else fmt == "console"
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor
    if use_console:
        renderer = structlog.dev.ConsoleRenderer()
    else:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    # Look sys.stderr up at each write, not once here: test harnesses swap it per test.
    stderr = cast("TextIO", _Stderr())
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=stderr),
        cache_logger_on_first_use=True,
    )
    handler = _StructlogHandler(stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StructlogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in (*_LIBRARY_LOGGERS, _BROKER_LOGGER):
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True
    for noisy in ("httpx", "httpcore", "chromadb.telemetry"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def broker_logger() -> logging.Logger:
    """The logger to give a FastStream broker (``RedisBroker(..., logger=broker_logger())``).
    Without one, faststream makes its own when the broker starts, after configure_logging ran,
    with a plain-text handler on stdout that does not propagate."""
    return logging.getLogger(_BROKER_LOGGER)
