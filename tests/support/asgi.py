"""Serve a real ASGI app (with its lifespan) on a free port inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

import devstack


@contextlib.asynccontextmanager
async def serve(app: Any, *, startup_timeout: float = 120.0) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1:<free port>; yields its base URL."""
    port = devstack.free_port()
    # A bounded graceful shutdown: a keep-alive or in-flight request left by a test must not
    # hold the teardown open on a loaded machine.
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    # Tests own the signals; uvicorn must not replace pytest's SIGINT handling.
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    # uvicorn logs why the lifespan failed (the app's exception) and returns: keep the reason,
    # so a test can assert on it.
    errors = _ErrorLines()
    logging.getLogger("uvicorn.error").addHandler(errors)
    try:
        task = asyncio.create_task(_serve(server))
        deadline = asyncio.get_running_loop().time() + startup_timeout
        while not server.started:
            if task.done():
                task.result()  # re-raise why it could not start
                msg = "server exited during startup: " + " | ".join(errors.lines)
                raise RuntimeError(msg)
            if asyncio.get_running_loop().time() > deadline:
                msg = f"app did not start within {startup_timeout:g}s"
                raise TimeoutError(msg)
            await asyncio.sleep(0.05)
    finally:
        logging.getLogger("uvicorn.error").removeHandler(errors)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 120)


async def _serve(server: uvicorn.Server) -> None:
    # uvicorn calls sys.exit when the app's lifespan fails; a SystemExit escaping a task would
    # stop the test session's event loop instead of failing the one test.
    with contextlib.suppress(SystemExit):
        await server.serve()


class _ErrorLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
