"""MARQUEE_TEST_SERVERS: Docker containers when an engine answers, local processes otherwise
(tests/support/servers.py). No Docker needed: the engine check is injected, or pointed at a
socket that does not exist."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import servers

ROOT = Path(__file__).resolve().parents[2]


def engine_answers() -> str | None:
    return None


def no_engine() -> str | None:
    return "DockerException: no such socket"


def must_not_ask() -> str | None:
    raise AssertionError("local must not look for a Docker engine")


@pytest.mark.parametrize("mode", [None, "", "  ", "auto", "AUTO"])
def test_auto_is_the_default_and_follows_the_engine(mode):
    assert servers.choose(mode, engine_answers) == "docker"
    assert servers.choose(mode, no_engine) == "local"


def test_local_never_asks_for_docker():
    assert servers.choose("local", must_not_ask) == "local"


def test_docker_uses_the_engine_when_it_answers():
    assert servers.choose("docker", engine_answers) == "docker"


def test_docker_without_an_engine_is_an_error_saying_why():
    with pytest.raises(servers.ServerChoiceError) as err:
        servers.choose("docker", no_engine)
    message = str(err.value)
    assert "MARQUEE_TEST_SERVERS=docker" in message
    assert "no such socket" in message  # the engine's own reason
    assert "local" in message  # and the way out


def test_an_unknown_mode_is_refused():
    with pytest.raises(servers.ServerChoiceError, match="'podman' is not one of auto, docker"):
        servers.choose("podman", engine_answers)


def test_a_missing_engine_is_detected_quickly(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    started = time.monotonic()
    problem = servers.docker_engine_problem()
    assert problem is not None
    assert time.monotonic() - started < servers.ENGINE_TIMEOUT_S + 1


def test_the_images_are_the_servers_the_local_path_runs():
    pins = (ROOT / "constraints.txt").read_text(encoding="utf-8")
    chromadb = re.search(r"^chromadb==(\S+)$", pins, re.MULTILINE)
    assert chromadb is not None
    assert f"chromadb/chroma:{chromadb.group(1)}" == servers.CHROMA_IMAGE
    redis_server = shutil.which("redis-server")
    assert redis_server, "redis-server is needed by the local path (and this check)"
    local = subprocess.run(
        [redis_server, "--version"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    local_version = re.search(r"v=(\d+\.\d+)\.", local)
    assert local_version is not None
    assert servers.REDIS_IMAGE.startswith(f"redis:{local_version.group(1)}.")


def test_a_session_asking_for_docker_without_an_engine_fails_instead_of_skipping(tmp_path):
    env = {
        **os.environ,
        "MARQUEE_TEST_SERVERS": "docker",
        "DOCKER_HOST": f"unix://{tmp_path}/docker.sock",
    }
    # Any test that needs a server; it must fail at fixture setup, before touching one.
    target = "tests/integration/shared/test_stream_backlog.py"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", target, "-x", "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "no Docker engine answers" in output
    assert " skipped" not in output
