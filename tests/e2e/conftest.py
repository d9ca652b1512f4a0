"""End-to-end fixtures: the whole stack started by scripts/devstack.py, as `make run` does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import devstack
from tests.support.stack import start_or_fail, wait_applied

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[devstack.Stack]:
    """The stack with the demo catalog ingested (`make run` minus the terminal)."""
    stack = devstack.Stack(
        tmp_path_factory.mktemp("stack"),
        embedders=1,
        ports=devstack.Ports.free(),
        # Blank counts as unset: a developer's real TMDB key must not start syncing in tests.
        # No images from TMDB's host either (tests never reach the internet); the poster test
        # starts a gateway of its own with a local stand-in.
        env={"TMDB_API_KEY": "", "TMDB_READ_TOKEN": "", "MARQUEE_GATEWAY_IMAGE_BASE_URL": ""},
        say=lambda _: None,
    )
    start_or_fail(stack)
    try:
        result = stack.ingest("demo", "--quiet")
        assert result.returncode == 0, result.stdout + result.stderr
        wait_applied(stack)
        yield stack
    finally:
        stack.stop()
