"""Session fixtures: a real Redis and a real Chroma server, and the model loaded once. A server
that cannot start fails the tests that need it with its log, never skips.

The servers are Docker containers (testcontainers, pinned images) when a Docker engine answers,
else local redis-server and `chroma run` processes on free ports, started the way `make run`
starts them (scripts/devstack.py). MARQUEE_TEST_SERVERS=auto|docker|local chooses
(tests/support/servers.py); tests only ever see the URLs.
"""

from __future__ import annotations

import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))  # devstack, the module `make run` runs

import devstack  # noqa: E402
from tests.fakes.anthropic import FakeAnthropic  # noqa: E402
from tests.support import servers  # noqa: E402
from tests.support.paths import CATALOG_CSV  # noqa: E402


def _start(proc: devstack.Proc, probe: object, what: str, timeout: float) -> devstack.Proc:
    proc.start()
    try:
        proc.wait_until(probe, what, timeout)  # type: ignore[arg-type]
    except devstack.StackError as exc:
        proc.stop()
        pytest.fail(f"could not start {proc.name} for the tests: {exc}", pytrace=False)
    return proc


@pytest.fixture(scope="session")
def test_servers() -> servers.Source:
    """Where the session's servers run: "docker" or "local" (MARQUEE_TEST_SERVERS)."""
    try:
        return servers.choose(os.environ.get(servers.ENV), servers.docker_engine_problem)
    except servers.ServerChoiceError as exc:
        pytest.fail(str(exc), pytrace=False)


@contextlib.contextmanager
def _container(start: Callable[[], contextlib.AbstractContextManager[str]]) -> Iterator[str]:
    try:
        with start() as url:
            yield url
    except devstack.StackError as exc:
        pytest.fail(f"could not start a server container for the tests: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def redis_url(
    test_servers: servers.Source, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh Redis for this test session (no persistence: tests start clean)."""
    if test_servers == "docker":
        with _container(servers.redis_container) as url:
            yield url
        return
    port = devstack.free_port()
    base = tmp_path_factory.mktemp("redis")
    try:
        proc = devstack.redis_proc(port, base / "data", base, persistent=False)
    except devstack.StackError as exc:
        pytest.fail(str(exc), pytrace=False)
    url = f"redis://127.0.0.1:{port}/0"
    _start(proc, lambda: devstack.redis_answers(url), "answering PING", 20)
    yield url
    proc.stop()


@pytest.fixture(scope="session")
def chroma_url(
    test_servers: servers.Source, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A Chroma HTTP server for this test session."""
    if test_servers == "docker":
        with _container(servers.chroma_container) as url:
            yield url
        return
    port = devstack.free_port()
    base = tmp_path_factory.mktemp("chroma")
    proc = devstack.chroma_proc(port, base / "data", base)
    url = f"http://127.0.0.1:{port}"
    _start(proc, lambda: devstack.http_ok(url + "/api/v2/heartbeat"), "up", 60)
    yield url
    proc.stop()


def _onnx_cache() -> Path:
    return Path.home() / ".cache" / "marquee" / "onnx"


@pytest.fixture(scope="session")
def encoder():  # type: ignore[no-untyped-def]
    """The all-MiniLM-L6-v2 model, loaded once per test session."""
    from marquee_shared.model.encoder import default_model_path, load_encoder

    # ONNX fp32, exported on first use and cached (the export path is exercised by every test
    # run): the reference test_backends holds the services' int8 default to. Tests hand this
    # one encoder to both embedder and search, so their vectors always match.
    return load_encoder(default_model_path(), "onnx", cache_dir=_onnx_cache())


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[object]:
    """A client on a flushed database: each test starts with no streams or groups."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def collection_name() -> str:
    """A fresh Chroma collection per test, so tests never see each other's movies."""
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeAnthropic]:
    """A fake Anthropic Messages API on a free port (tests/fakes/anthropic.py), shared by the
    session; each test's ``fake`` fixture resets it and sets its responder."""
    with FakeAnthropic() as server:
        yield server


@pytest.fixture(scope="session")
def catalog_csv() -> Path:
    if not CATALOG_CSV.exists():
        pytest.skip(f"{CATALOG_CSV} is absent (the ../shared kit is not beside the project)")
    return CATALOG_CSV
