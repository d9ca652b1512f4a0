"""Running the embedder in integration tests: quick settings, and waiting for the stream to be
applied."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from marquee_embedder.settings import EmbedderSettings
from marquee_shared.events import CATALOG_STREAM
from marquee_shared.streams import as_text
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from redis.asyncio import Redis


CLI = str(Path(sys.executable).parent / "marquee-embedder")


def settings_for(redis_url: str, chroma_url: str, collection: str) -> EmbedderSettings:
    """Small batches and short polls, recovery at its defaults."""
    return EmbedderSettings(
        redis_url=redis_url,
        chroma_url=chroma_url,
        chroma_collection=collection,
        batch_size=16,
        poll_ms=100,
        log_format="json",
    )


def run_cli(
    redis_url: str, chroma_url: str, collection: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """The real ``marquee-embedder`` command against these servers."""
    env = {
        **os.environ,
        "MARQUEE_REDIS_URL": redis_url,
        "MARQUEE_CHROMA_URL": chroma_url,
        "MARQUEE_CHROMA_COLLECTION": collection,
    }
    return subprocess.run(
        [CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def fast_settings(
    redis_url: str, chroma_url: str, collection: str, **kw: object
) -> EmbedderSettings:
    """Small batches, short polls and quick recovery, so a test sees each step in well under a
    second."""
    options: dict[str, object] = {
        "batch_size": 16,
        "poll_ms": 100,
        "recovery_interval_s": 0.2,
        "claim_idle_ms": 300,
        "max_deliveries": 2,
        "log_format": "json",
        **kw,
    }
    return EmbedderSettings(
        redis_url=redis_url,
        chroma_url=chroma_url,
        chroma_collection=collection,
        **options,  # type: ignore[arg-type]
    )


async def group_done(redis: Redis, name: str = "embedders") -> bool:
    """Whether the group has read and acknowledged every entry of the catalog stream."""
    for group in await redis.xinfo_groups(CATALOG_STREAM):
        if as_text(group["name"]) == name:
            return bool(group["pending"] == 0 and group.get("lag") == 0)
    return False


async def wait_drained(redis: Redis, group: str = "embedders", timeout: float = 60) -> None:
    """Until every entry on the stream was delivered to the group and acknowledged."""
    await wait_until(lambda: group_done(redis, group), timeout=timeout, what="stream drained")
