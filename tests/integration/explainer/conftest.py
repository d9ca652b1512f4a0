"""Fixtures for the explainer: a small catalog indexed by the real embedder code into the
session's Chroma, the fake Anthropic server, and explainer apps served on free ports.

``redis_url`` / ``redis`` (a real redis-server, flushed per test), ``chroma_url`` and
``encoder`` come from tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from marquee_explainer.app import create_app
from marquee_explainer.settings import ExplainerSettings
from tests.fakes.anthropic import FakeAnthropic
from tests.support.asgi import serve
from tests.support.explainer import MOVIES, index_movies

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
async def movie_collection(chroma_url: str, redis_url: str, encoder: Any) -> str:
    """One collection with MOVIES for the whole session; tests that change movies make their
    own (``fresh_collection``)."""
    name = f"explain_{uuid.uuid4().hex[:10]}"
    await index_movies(chroma_url, name, redis_url, encoder, MOVIES)
    return name


@pytest.fixture
async def fresh_collection(chroma_url: str, redis_url: str, encoder: Any) -> str:
    name = f"explain_{uuid.uuid4().hex[:10]}"
    await index_movies(chroma_url, name, redis_url, encoder, MOVIES)
    return name


@pytest.fixture
def fake(fake_server: FakeAnthropic) -> FakeAnthropic:
    """The session's fake Anthropic API with no script, no requests and no cache."""
    fake_server.reset()
    return fake_server


Explainer = Callable[..., contextlib.AbstractAsyncContextManager[str]]


@pytest.fixture
def explainer(
    redis: Any, redis_url: str, chroma_url: str, movie_collection: str, fake: FakeAnthropic
) -> Explainer:
    """``async with explainer(**settings) as url``: an explainer app on a free port, writing
    with Claude through the fake API unless ``anthropic_api_key=None``."""

    @contextlib.asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[str]:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "chroma_url": chroma_url,
            "chroma_collection": movie_collection,
            "anthropic_api_key": fake.api_key,
            "anthropic_base_url": fake.url,
            "timeout_s": 5.0,
            "max_retries": 0,
            "deadline_s": 10.0,
            "log_format": "console",
        }
        values.update(overrides)
        async with serve(create_app(ExplainerSettings(**values))) as url:
            yield url

    return start
