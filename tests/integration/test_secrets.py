"""Secrets never show: not in any log line, not in any response (errors included), not in the
OpenAPI documents.

Real services with every secret set: the gateway (API keys, internal token) in front of a real
explainer (an Anthropic API key the fake Anthropic API refuses) and a real ingest service (a TMDB
API key, which travels in URLs, against the fake TMDB answering 500s), and the TMDB client with a
read token against a failing and an unreachable TMDB. The test provokes auth failures, upstream
errors and validation errors, captures every byte the process writes to stdout/stderr (structlog
and stdlib logging, at DEBUG) and every response, and looks for the secret values.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from marquee_explainer.app import create_app as create_explainer
from marquee_explainer.settings import ExplainerSettings
from marquee_gateway.app import create_app as create_gateway
from marquee_gateway.settings import GatewaySettings
from marquee_ingest.app import create_app as create_ingest
from marquee_ingest.settings import IngestSettings
from marquee_ingest.tmdb import TmdbClient, TmdbError
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.tmdb import FakeTmdb, tmdb_movie
from tests.support.asgi import serve
from tests.support.explainer import MOVIES, index_movies

pytestmark = pytest.mark.integration

API_KEYS = [f"gw-key-{secrets.token_hex(12)}", f"gw-key-{secrets.token_hex(12)}"]
INTERNAL_TOKEN = f"internal-{secrets.token_hex(12)}"
ANTHROPIC_KEY = f"sk-ant-api03-{secrets.token_hex(16)}"
TMDB_API_KEY = f"tmdbkey{secrets.token_hex(12)}"
TMDB_READ_TOKEN = f"eyJtmdb.{secrets.token_hex(24)}"
CHROMA_TOKEN = f"chroma-{secrets.token_hex(12)}"
SECRETS = [*API_KEYS, INTERNAL_TOKEN, ANTHROPIC_KEY, TMDB_API_KEY, TMDB_READ_TOKEN, CHROMA_TOKEN]

JAWS, JAWS_2 = 578, 579


def leaks(text: str) -> list[str]:
    """The secrets (or a long enough piece of one) that appear in ``text``."""
    return [s for s in SECRETS if s in text or s[-16:] in text]


class Captured:
    """Everything the process writes to stdout/stderr and every stdlib log record (at DEBUG),
    plus the responses a test records; ``check`` looks through all of it for secrets."""

    def __init__(self, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture):
        self._capfd, self._caplog = capfd, caplog
        self.responses: list[str] = []
        caplog.set_level(logging.DEBUG)
        capfd.readouterr()

    def check(self, *must_have: str) -> None:
        out = self._capfd.readouterr()
        written = out.out + out.err + self._caplog.text
        # What the test provoked was logged, so the search below is not vacuous.
        for line in must_have:
            assert line in written, f"{line} was not logged"
        assert not leaks(written), f"secrets in the logs: {leaks(written)}"
        for text in self.responses:
            assert not leaks(text), f"secrets in a response: {text[:500]}"


@pytest.fixture
def captured(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Captured:
    return Captured(capfd, caplog)


def record(captured: Captured, r: httpx.Response) -> httpx.Response:
    captured.responses.append(f"{r.status_code} {dict(r.headers)} {r.text}")
    return r


@contextlib.asynccontextmanager
async def services(redis_url: str, chroma_url: str, encoder: Any) -> AsyncIterator[dict[str, Any]]:
    collection = f"secrets_{uuid.uuid4().hex[:10]}"
    await index_movies(chroma_url, collection, redis_url, encoder, MOVIES)
    with (
        FakeAnthropic(api_key=f"sk-ant-other-{secrets.token_hex(8)}") as anthropic,
        FakeTmdb(
            [tmdb_movie(1000 + i, f"Movie {i}") for i in range(5)], api_key=TMDB_API_KEY
        ) as tmdb,
    ):
        common: dict[str, Any] = {
            "redis_url": redis_url,
            "internal_token": INTERNAL_TOKEN,
            "log_level": "DEBUG",
            "log_format": "json",
        }
        explainer = create_explainer(
            ExplainerSettings(
                **common,
                chroma_url=chroma_url,
                chroma_collection=collection,
                chroma_token=CHROMA_TOKEN,  # the test Chroma has no proxy: sent, not checked
                anthropic_api_key=ANTHROPIC_KEY,  # refused by the fake: an upstream 401
                anthropic_base_url=anthropic.url,
                timeout_s=5.0,
                max_retries=0,
            )
        )
        ingest = create_ingest(
            IngestSettings(
                **common,
                tmdb_api_key=TMDB_API_KEY,
                tmdb_base_url=tmdb.url,
                tmdb_max_retries=1,
                sync_interval_s=0,
                sync_lock_ttl_s=5,
            )
        )
        async with serve(explainer) as explainer_url, serve(ingest) as ingest_url:
            gateway = create_gateway(
                GatewaySettings(
                    **common,
                    api_keys=",".join(API_KEYS),
                    search_url="http://127.0.0.1:9",  # down: every search is a 503
                    explainer_url=explainer_url,
                    ingest_url=ingest_url,
                )
            )
            async with serve(gateway) as gateway_url:
                yield {
                    "gateway": gateway_url,
                    "explainer": explainer_url,
                    "ingest": ingest_url,
                    "tmdb": tmdb,
                    "anthropic": anthropic,
                }


async def test_no_secret_in_logs_or_responses_through_auth_upstream_and_validation_errors(
    redis, redis_url, chroma_url, encoder, captured
):
    async with (
        services(redis_url, chroma_url, encoder) as s,
        httpx.AsyncClient(base_url=s["gateway"], timeout=60) as client,
    ):

        async def call(method: str, url: str, **kw: Any) -> httpx.Response:
            return record(captured, await client.request(method, url, **kw))

        # Auth failures: no key, near misses of a real key, a key in the wrong header.
        body = {"events": [{"type": "movie.deleted", "source": "t", "tmdb_id": 1}]}
        assert (await call("POST", "/v1/catalog/events", json=body)).status_code == 401
        for wrong in (API_KEYS[0][:-1], API_KEYS[0] + "x", API_KEYS[0].upper()):
            r = await call("POST", "/v1/catalog/events", json=body, headers={"X-API-Key": wrong})
            assert r.status_code == 403
        r = await call("GET", "/v1/admin/dead-letters", headers={"Authorization": API_KEYS[1]})
        assert r.status_code == 401

        # Validation errors with a good key (the 422 echoes input, never the key).
        key = {"X-API-Key": API_KEYS[1]}
        r = await call("POST", "/v1/catalog/events", json={"events": [{"type": "x"}]}, headers=key)
        assert r.status_code == 422
        r = await call("POST", "/v1/explanations", json={"target_id": JAWS})
        assert r.status_code == 422
        assert (await call("GET", "/v1/search", params={"q": ""})).status_code == 422

        # Upstream errors: search is down; the LLM refuses the explainer's key.
        assert (await call("GET", "/v1/search", params={"q": "shark"})).status_code == 503
        r = await call("POST", "/v1/explanations", json={"target_id": JAWS_2, "liked": [JAWS]})
        assert r.status_code == 200, r.text
        assert r.json()["fallback_reason"] == "llm_error"
        assert s["anthropic"].calls >= 1

        # The internal services refuse a missing or wrong internal token.
        for url in (s["explainer"] + "/explanations", s["ingest"] + "/admin/sync"):
            r = record(captured, await client.post(url, json={}))
            assert r.status_code == 401
            r = record(
                captured,
                await client.post(url, json={}, headers={"X-Internal-Token": INTERNAL_TOKEN[:-2]}),
            )
            assert r.status_code == 401

        # A TMDB sync (API key in the URL) that fails on TMDB 500s: its error is in the status.
        s["tmdb"].fail_next(100, 500)
        r = await call("POST", "/v1/admin/sync", headers=key)
        assert r.status_code == 202, r.text
        status: dict[str, Any] = {}
        for _ in range(200):
            status = (await call("GET", "/v1/admin/sync", headers=key)).json()
            if status.get("last_run") and status["last_run"]["outcome"] != "running":
                break
            await asyncio.sleep(0.1)
        assert status["last_run"]["outcome"] == "failed", status
        assert "HTTP 500" in status["last_error"]
        assert any(req.params.get("api_key") == TMDB_API_KEY for req in s["tmdb"].requests)
        assert (await call("GET", "/v1/stats")).status_code == 200
    captured.check(
        "http_request",
        "llm_error",
        "tmdb_retry",
        "sync_finished",
        "backend_unavailable",
        "Request options",  # the Anthropic SDK's own DEBUG lines
    )


async def test_the_tmdb_client_keeps_its_credentials_out_of_errors_and_logs(captured):
    with FakeTmdb([tmdb_movie(1001, "One")], read_token=TMDB_READ_TOKEN) as tmdb:
        async with httpx.AsyncClient() as http:
            for credentials in ({"read_token": TMDB_READ_TOKEN}, {"api_key": TMDB_API_KEY}):
                client = TmdbClient(
                    http, base_url=tmdb.url, max_retries=1, backoff_base=0.01, **credentials
                )
                tmdb.fail_next(10, 500)
                errors: list[str] = []
                for base in (tmdb.url, "http://127.0.0.1:9/3"):  # failing, then unreachable
                    client._base_url = base
                    with pytest.raises(TmdbError) as failed:
                        await client.movie_details(1001)
                    errors.append(repr(failed.value) + str(failed.value.__cause__))
                tmdb.reset()
                captured.responses.extend(errors)
            # The wrong credentials: TMDB's 401 becomes an error that names no key.
            wrong = TmdbClient(http, base_url=tmdb.url, api_key=TMDB_API_KEY, max_retries=0)
            with pytest.raises(TmdbError) as refused:
                await wrong.movie_details(1001)
            captured.responses.append(str(refused.value))
            assert "401" in str(refused.value)
    captured.check("tmdb_retry")


async def test_the_openapi_documents_hold_no_secret(
    redis, redis_url, chroma_url, encoder, captured
):
    async with services(redis_url, chroma_url, encoder) as s, httpx.AsyncClient(timeout=30) as c:
        token = {"X-Internal-Token": INTERNAL_TOKEN}
        for url in (s["gateway"], s["explainer"], s["ingest"]):
            r = record(captured, await c.get(url + "/openapi.json", headers=token))
            assert r.status_code == 200
            assert '"example' in r.text or url != s["gateway"]
            # No credential-looking example either (an Anthropic key, a TMDB bearer token).
            assert "sk-ant-" not in r.text
            assert "Bearer ey" not in r.text
    captured.check("http_request")
