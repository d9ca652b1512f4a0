"""The whole stack with the ingest service syncing from a fake TMDB: a changed overview on TMDB
reaches search after a sync started through the gateway, and /v1/stats shows it fresh."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

import devstack
from tests.fakes.tmdb import FakeTmdb, tmdb_movie
from tests.support.stack import embedder_metric, start_or_fail, wait_applied

pytestmark = pytest.mark.e2e

CHANGED = 9001
NEW_OVERVIEW = (
    "A retired lighthouse keeper befriends a humpback whale that sings opera, and together "
    "they stage a concert for a fishing village that has forgotten how to celebrate."
)
MOVIES = [
    tmdb_movie(9001, "The Quiet Coast", overview="A fisherman's widow runs a bakery."),
    tmdb_movie(9002, "Iron Orbit", overview="Astronauts repair a failing space station."),
    tmdb_movie(9003, "Velvet Heist", overview="A crew of thieves robs a casino vault."),
    tmdb_movie(9004, "Snow Lantern", overview="Two sisters cross a frozen kingdom."),
    tmdb_movie(9005, "Night Shift", overview="A nurse uncovers a conspiracy at a hospital."),
    tmdb_movie(9006, "Dust Road", overview="A cowboy escorts cattle across the desert."),
]


def api(stack: devstack.Stack, method: str, path: str) -> httpx.Response:
    return httpx.request(
        method, stack.gateway_url + path, headers={"X-API-Key": stack.api_key}, timeout=30
    )


def wait_sync(stack: devstack.Stack, done: Any, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = api(stack, "GET", "/v1/admin/sync")
        assert response.status_code == 200, response.text
        status = response.json()
        if done(status):
            return status
        time.sleep(0.2)
    pytest.fail(f"the sync did not get there within {timeout}s: {status}; logs {stack.log_dir}")


def test_a_changed_overview_reaches_search_after_a_sync_through_the_gateway(tmp_path):
    with FakeTmdb(MOVIES) as tmdb:
        stack = devstack.Stack(
            tmp_path / "stack",
            embedders=1,
            ports=devstack.Ports.free(),
            env={
                # Both kinds of credential, so a developer's own TMDB_* cannot leak in.
                "TMDB_API_KEY": tmdb.api_key,
                "TMDB_READ_TOKEN": tmdb.read_token,
                "MARQUEE_INGEST_TMDB_BASE_URL": tmdb.url,
                "MARQUEE_INGEST_SYNC_INTERVAL_S": "3600",
                "MARQUEE_INGEST_SYNC_INITIAL_PAGES": "1",
            },
            say=lambda _: None,
        )
        start_or_fail(stack)
        try:
            # The schedule's first run, at startup: the initial load of the popular list.
            first = wait_sync(stack, lambda s: s["last_success_at"] and not s["running"])
            assert first["last_run"]["trigger"] == "schedule"
            assert first["last_run"]["published_fetched"] == len(MOVIES)
            wait_applied(stack, timeout=60)
            stats = api(stack, "GET", "/v1/stats").json()
            assert (stats["catalog_size"], stats["embedded"]) == (len(MOVIES), len(MOVIES))
            assert stats["coverage_percent"] == 100.0
            embedded_before = embedder_metric(stack.embedder_urls[0], "embedded")
            unchanged_before = embedder_metric(stack.embedder_urls[0], "unchanged")

            tmdb.change_movie(CHANGED, overview=NEW_OVERVIEW)
            tmdb.record_change(9002)  # listed as changed, but nothing we read did
            triggered_at = datetime.now(UTC)
            started = api(stack, "POST", "/v1/admin/sync")
            assert started.status_code == 202, started.text
            run_id = started.json()["run_id"]
            status = wait_sync(
                stack, lambda s: (s["last_run"] or {}).get("run_id") == run_id and not s["running"]
            )
            run = status["last_run"]
            assert run["outcome"] == "succeeded", run
            assert (run["mode"], run["listed"], run["unchanged"]) == ("incremental", 2, 1)
            assert (run["published_fetched"], run["published_deleted"]) == (1, 0)
            wait_applied(stack, timeout=60)

            found = httpx.get(
                stack.gateway_url + "/v1/search",
                params={"q": "a lighthouse keeper and an opera-singing whale", "k": 1},
                timeout=30,
            )
            assert found.status_code == 200, found.text
            hits = found.json()["results"]
            assert hits[0]["tmdb_id"] == CHANGED
            assert hits[0]["overview"] == NEW_OVERVIEW
            # Downstream, exactly one movie was embedded again; the unchanged one never
            # reached the embedder at all.
            url = stack.embedder_urls[0]
            assert embedder_metric(url, "embedded") - embedded_before == 1
            assert embedder_metric(url, "unchanged") - unchanged_before == 0

            stats = api(stack, "GET", "/v1/stats").json()
            assert stats["last_sync_at"] == status["last_success_at"]
            assert datetime.fromisoformat(stats["last_sync_at"]) > triggered_at
            age = (datetime.now(UTC) - triggered_at).total_seconds()
            assert 0 <= stats["freshness_seconds"] <= age
            assert stats["stream"]["backlog"] == 0
            assert stats["coverage_percent"] == 100.0
            assert stats["unavailable"] == {}
        finally:
            stack.stop()
