"""The whole stack, started the way `make run` starts it, answering real questions."""

from __future__ import annotations

import httpx
import pytest

import devstack
from tests.support.ingest import DEMO_IDS
from tests.support.stack import embedder_metric, start_or_fail, wait_applied

pytestmark = pytest.mark.e2e

PLOTS = [
    (
        "a great white shark keeps killing swimmers at a beach town and three men go to sea to hunt it",
        578,
    ),
    ("a computer hacker learns the world is a simulation run by machines", 603),
    ("a cowboy doll gets jealous when a space ranger toy becomes the boy's favourite", 862),
    ("a girl must work in a bathhouse for spirits after her parents are turned into pigs", 129),
    ("a clownfish father crosses the ocean to find his son who was taken by a diver", 12),
    ("scientists clone dinosaurs for an island theme park and they escape", 329),
    (
        "a poor korean family gets hired by a rich family by pretending to be tutors and a housekeeper",
        496243,
    ),
    ("a banker wrongly convicted of murdering his wife escapes prison after decades", 278),
    (
        "astronauts travel through a wormhole to find a new home for humanity while time runs differently",
        157336,
    ),
    ("thieves enter people's dreams to plant an idea", 27205),
]


def search(stack: devstack.Stack, **params: object) -> list[dict[str, object]]:
    r = httpx.get(stack.gateway_url + "/v1/search", params=params, timeout=30)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    return r.json()["results"]  # type: ignore[no-any-return]


def test_the_demo_catalog_is_fully_indexed(demo_stack):
    assert demo_stack.indexed_count() == len(DEMO_IDS)
    assert len(DEMO_IDS) >= 200


@pytest.mark.parametrize(("plot", "tmdb_id"), PLOTS, ids=[str(t) for _, t in PLOTS])
def test_a_described_plot_finds_its_movie_in_the_top_3(demo_stack, plot, tmdb_id):
    assert tmdb_id in DEMO_IDS
    top3 = [h["tmdb_id"] for h in search(demo_stack, q=plot, k=3)]
    assert tmdb_id in top3, f"{plot!r}: got {top3}"


def test_filters_hold(demo_stack):
    hits = search(demo_stack, q="a love story", k=20, language="fr")
    assert hits and all(h["original_language"] == "fr" for h in hits)
    hits = search(demo_stack, q="war", k=20, year_max=1960)
    assert hits and all(h["year"] <= 1960 for h in hits)
    hits = search(demo_stack, q="talking animals", k=20, genres="Animation", min_rating=7.5)
    assert hits and all("Animation" in h["genres"] and h["rating"] >= 7.5 for h in hits)
    hits = search(
        demo_stack,
        q="monsters",
        k=20,
        year_min=1980,
        year_max=1989,
        genres="Horror,Science Fiction",
    )
    assert hits and all(1980 <= h["year"] <= 1989 for h in hits)
    assert all({"Horror", "Science Fiction"} & set(h["genres"]) for h in hits)


@pytest.mark.parametrize(
    ("source", "sequel"),
    [(862, 10193), (348, 679), (238, 240)],
    ids=["toy-story", "alien", "godfather"],
)
def test_similar_movies_are_sensible(demo_stack, source, sequel):
    """A film's sequel is among its 3 nearest, and most neighbours share a genre with it."""
    movie = httpx.get(f"{demo_stack.gateway_url}/v1/movies/{source}", timeout=10).json()
    r = httpx.get(
        f"{demo_stack.gateway_url}/v1/movies/{source}/similar", params={"k": 5}, timeout=30
    )
    assert r.status_code == 200
    hits = r.json()["results"]
    ids = [h["tmdb_id"] for h in hits]
    assert source not in ids
    assert sequel in ids[:3], hits
    assert sum(bool(set(movie["genres"]) & set(h["genres"])) for h in hits) >= 4, hits


def test_movie_details_and_errors_through_the_gateway(demo_stack):
    r = httpx.get(demo_stack.gateway_url + "/v1/movies/578", timeout=10)
    assert r.status_code == 200
    assert r.json()["title"] == "Jaws"
    assert r.json()["directors"] == ["Steven Spielberg"]
    assert httpx.get(demo_stack.gateway_url + "/v1/movies/999999999", timeout=10).status_code == 404
    assert (
        httpx.get(
            demo_stack.gateway_url + "/v1/search", params={"q": "x", "k": 1000}, timeout=10
        ).status_code
        == 422
    )
    services = {
        demo_stack.gateway_url: "marquee_http_request_seconds",
        demo_stack.search_url: "marquee_http_request_seconds",
        **dict.fromkeys(demo_stack.embedder_urls, "marquee_embedder_events_total"),
    }
    for url, metric in services.items():
        assert httpx.get(url + "/health", timeout=10).status_code == 200
        assert httpx.get(url + "/ready", timeout=10).status_code == 200
        assert metric in httpx.get(url + "/metrics", timeout=10).text


def test_running_again_keeps_the_data_and_duplicates_nothing(demo_stack):
    """Stop everything, start again on the same data folder, ingest the demo again.

    Last in this module on purpose: it stops the module's stack to restart on its data.
    """
    count = demo_stack.indexed_count()
    demo_stack.stop()
    again = devstack.Stack(
        demo_stack.data_dir, embedders=1, ports=demo_stack.ports, say=lambda _: None
    )
    start_or_fail(again)
    try:
        assert again.indexed_count() == count
        result = again.ingest("demo", "--quiet")
        assert result.returncode == 0, result.stderr
        wait_applied(again)
        assert again.indexed_count() == count
        url = again.embedder_urls[0]
        assert embedder_metric(url, "embedded") == 0
        assert embedder_metric(url, "unchanged") == len(DEMO_IDS)
        top = search(again, q="a great white shark terrorizes a beach town", k=1)
        assert top[0]["tmdb_id"] == 578
    finally:
        again.stop()
