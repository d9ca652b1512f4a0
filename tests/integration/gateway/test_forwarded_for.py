"""X-Forwarded-For counts only from the configured proxies (issue 15, item 10).

The gateway runs as `make run` and the image start it (the uvicorn command line of
scripts/devstack.py), because the fault was in that command line: uvicorn's own proxy-header
handling believes X-Forwarded-For from 127.0.0.1 by default and rewrites the peer before the
gateway sees it, so a local client (or anything behind a sidecar) rotating the header was a new
client on every request and never rate-limited.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

import devstack

pytestmark = pytest.mark.integration

LIMIT = 3
COUNTED = "/v1/nothing-here"
"""A path the rate limiter counts (everything but probes and the page) that needs no backend."""


@pytest.fixture
def clean_redis(redis_url: str) -> str:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # no budget left over from another test
    client.close()
    return redis_url


@contextlib.contextmanager
def gateway_process(redis_url: str, log_dir: Path, **env: str) -> Iterator[str]:
    port = devstack.free_port()
    proc = devstack.service_proc(
        "gateway",
        "marquee_gateway.app",
        port,
        {
            "MARQUEE_REDIS_URL": redis_url,
            "MARQUEE_GATEWAY_RATE_LIMIT_PER_MINUTE": str(LIMIT),
            "MARQUEE_GATEWAY_TRUSTED_PROXIES": "",
            "MARQUEE_LOG_FORMAT": "json",
            **env,
        },
        log_dir,
    )
    url = f"http://127.0.0.1:{port}"
    proc.start()
    try:
        proc.wait_until(lambda: devstack.http_ok(url + "/health"), "answering /health", 60)
        yield url
    finally:
        proc.stop()


def statuses(url: str, forwarded: list[str]) -> list[int]:
    with httpx.Client(base_url=url, timeout=10) as client:
        return [
            client.get(COUNTED, headers={"X-Forwarded-For": value}).status_code
            for value in forwarded
        ]


def test_rotating_forwarded_for_from_an_untrusted_peer_is_still_rate_limited(
    clean_redis: str, tmp_path: Path
) -> None:
    rotating = [f"203.0.113.{i}" for i in range(1, 7)]
    with gateway_process(clean_redis, tmp_path) as url:
        # The peer (127.0.0.1) is no configured proxy: every request is the peer's, whatever
        # address it claims.
        assert statuses(url, rotating) == [404] * LIMIT + [429] * (len(rotating) - LIMIT)


def test_a_configured_proxys_forwarded_for_names_the_client(
    clean_redis: str, tmp_path: Path
) -> None:
    with gateway_process(
        clean_redis, tmp_path, MARQUEE_GATEWAY_TRUSTED_PROXIES="127.0.0.1/32"
    ) as url:
        # From a trusted proxy each forwarded address is its own client with its own budget...
        assert statuses(url, [f"203.0.113.{i}" for i in range(1, 7)]) == [404] * 6
        # ...and one client behind it is limited as itself (not the proxy's shared budget).
        assert statuses(url, ["198.51.100.9"] * (LIMIT + 1)) == [404] * LIMIT + [429]
        # What the client wrote itself, left of the proxy's entry, is ignored.
        spoofed = [f"10.9.9.{i}, 198.51.100.9" for i in range(1, 3)]
        assert statuses(url, spoofed) == [429, 429]
