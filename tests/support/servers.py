"""Where the tests' Redis and Chroma servers come from: Docker containers (testcontainers) when a
Docker engine answers, local processes otherwise (the way `make run` starts them).

``MARQUEE_TEST_SERVERS`` chooses: ``auto`` (the default: Docker if an engine answers, else
local), ``docker`` (an engine is required: without one the session fails, saying so) or
``local``. Either way a test gets a URL; nothing else differs.

The images are pinned to the servers the local path runs: Redis 7.0 (Debian 12's
redis-server) and the Chroma server of the chromadb release in constraints.txt (the image is
built from the same Rust server as its `chroma run`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from importlib.metadata import version
from typing import Literal

import devstack

ENV = "MARQUEE_TEST_SERVERS"
MODES = ("auto", "docker", "local")
REDIS_IMAGE = "redis:7.0.15"
CHROMA_IMAGE = f"chromadb/chroma:{version('chromadb')}"
ENGINE_TIMEOUT_S = 2.0
"""How long `auto` waits for an engine's answer: with no socket the client fails at once."""

Source = Literal["docker", "local"]


class ServerChoiceError(RuntimeError):
    """MARQUEE_TEST_SERVERS is invalid, or asks for Docker where no engine answers."""


def docker_engine_problem(timeout_s: float = ENGINE_TIMEOUT_S) -> str | None:
    """None when a Docker engine answers a ping; otherwise why not (no client, no engine)."""
    try:
        import docker  # only the Docker path needs it
    except ImportError as exc:
        return f"the docker Python package is missing ({exc})"
    try:
        client = docker.from_env(timeout=int(max(1, timeout_s)))
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # any failure means "no usable engine"
        return f"{type(exc).__name__}: {exc}"
    return None


def choose(mode: str | None, engine_problem: Callable[[], str | None]) -> Source:
    """``docker`` or ``local`` for a MARQUEE_TEST_SERVERS value (None or blank: auto)."""
    chosen = (mode or "auto").strip().lower() or "auto"
    if chosen not in MODES:
        msg = f"{ENV}={mode!r} is not one of {', '.join(MODES)}"
        raise ServerChoiceError(msg)
    if chosen == "local":
        return "local"
    problem = engine_problem()
    if problem is None:
        return "docker"
    if chosen == "docker":
        msg = (
            f"{ENV}=docker, but no Docker engine answers ({problem}). Start Docker (or set "
            f"DOCKER_HOST), or run with {ENV}=local or auto."
        )
        raise ServerChoiceError(msg)
    return "local"


# --- the Docker path -----------------------------------------------------------------------


@contextlib.contextmanager
def _container(
    image: str,
    port: int,
    url: Callable[[str, int], str],
    probe: Callable[[str], bool],
    command: list[str] | None = None,
) -> Iterator[str]:
    from testcontainers.core.container import DockerContainer

    try:
        container = DockerContainer(image).with_exposed_ports(port)
        if command:
            container = container.with_command(command)
        container.start()
    except Exception as exc:  # the engine's reason (pull refused, no space...), as the message
        msg = f"could not start a {image} container: {type(exc).__name__}: {exc}"
        raise devstack.StackError(msg) from exc
    try:
        address = url(container.get_container_host_ip(), int(container.get_exposed_port(port)))
        deadline = time.monotonic() + 60
        while not probe(address):
            if time.monotonic() > deadline:
                stdout, stderr = container.get_logs()
                log = (stdout + stderr)[-3000:].decode(errors="replace")
                msg = f"{image} did not answer at {address} within 60 s:\n{log}"
                raise devstack.StackError(msg)
            time.sleep(0.2)
        yield address
    finally:
        container.stop()


def redis_container() -> contextlib.AbstractContextManager[str]:
    return _container(
        REDIS_IMAGE,
        6379,
        lambda host, port: f"redis://{host}:{port}/0",
        devstack.redis_answers,
        # As the local fixture runs it: no persistence, tests start clean.
        ["redis-server", "--save", "", "--appendonly", "no"],
    )


def chroma_container() -> contextlib.AbstractContextManager[str]:
    return _container(
        CHROMA_IMAGE,
        8000,
        lambda host, port: f"http://{host}:{port}",
        lambda url: devstack.http_ok(url + "/api/v2/heartbeat"),
    )
