"""One log format per service: stdlib records (uvicorn, faststream) are rendered by structlog
with the same processors as structlog's own lines, request id included."""

from __future__ import annotations

import json
import logging
import logging.config
from typing import TYPE_CHECKING, Any

import faststream  # noqa: F401 - its import installs faststream's own handler, as in a service
import pytest
import structlog
import uvicorn.config

from marquee_shared.logging import broker_logger, configure_logging

if TYPE_CHECKING:
    from collections.abc import Iterator

LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "faststream")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back for the tests that follow."""
    structlog_config = structlog.get_config()
    root = logging.getLogger()
    root_state = (list(root.handlers), root.level)
    libraries = {
        lg.name: (list(lg.handlers), lg.propagate, lg.level)
        for lg in map(logging.getLogger, (*LIBRARY_LOGGERS, broker_logger().name))
    }
    yield
    structlog.configure(**structlog_config)
    structlog.contextvars.clear_contextvars()
    root.handlers[:], root.level = root_state
    for name, (handlers, propagate, level) in libraries.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.propagate, lg.level = handlers, propagate, level


def json_lines(err: str) -> list[dict[str, Any]]:
    lines = [line for line in err.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def test_uvicorn_lines_are_json_with_the_keys_of_structlog_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # As under `uvicorn --factory`: uvicorn's own logging config first, then the app factory.
    logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)
    configure_logging("INFO", "json")
    capsys.readouterr()
    structlog.contextvars.bind_contextvars(request_id="req-1")

    structlog.get_logger("marquee.http").info("http_request", status=200)
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/v1/search", "1.1", 200
    )

    captured = capsys.readouterr()
    assert captured.out == ""  # uvicorn's access handler wrote to stdout
    ours, uvicorn_line = json_lines(captured.err)
    assert set(uvicorn_line) == {*ours, "logger"} - {"status"}
    assert uvicorn_line["event"] == '127.0.0.1:5000 - "GET /v1/search HTTP/1.1" 200'
    assert uvicorn_line["logger"] == "uvicorn.access"
    assert uvicorn_line["level"] == ours["level"] == "info"
    assert uvicorn_line["request_id"] == ours["request_id"] == "req-1"
    assert uvicorn_line["timestamp"].endswith("Z")


def test_a_library_exception_is_one_json_line_with_its_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", "json")
    capsys.readouterr()
    try:
        raise ZeroDivisionError("boom")
    except ZeroDivisionError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")

    (line,) = json_lines(capsys.readouterr().err)
    assert line["level"] == "error"
    assert line["event"] == "Exception in ASGI application"
    assert "ZeroDivisionError: boom" in line["exception"]
    assert "request_id" not in line  # none is bound outside a request


@pytest.mark.parametrize("name", ["faststream", "faststream.access.redis"])
def test_faststream_lines_are_json(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    capsys.readouterr()
    structlog.contextvars.bind_contextvars(event_id="evt-1")
    logger = broker_logger() if name == "faststream.access.redis" else logging.getLogger(name)
    logger.info("Received")

    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = json_lines(captured.err)
    assert line["event"] == "Received"
    assert line["logger"] == name
    assert line["event_id"] == "evt-1"


def test_configuring_again_replaces_the_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    configure_logging("WARNING", "console")
    capsys.readouterr()
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")

    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1  # not once per configure_logging call
    assert "Invalid HTTP request received." in lines[0]
    assert not lines[0].startswith("{")  # the console renderer now
