"""Recommendations, browsing and similar-by-text against real parts, through the gateway."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from marquee_shared.api import MAX_TASTE_IDS
from tests.integration.search.movies import BY_ID, HORROR, MUSICALS, TRAP
from tests.support.search import get, ids, post

pytestmark = pytest.mark.integration

HORROR_LIKES = [694, 948, 1091]
MUSICAL_LIKES = [872, 15121, 313369]


async def recommend(stack, **body):
    r = await post(stack["gateway"] + "/v1/recommendations", body)
    assert r.status_code == 200, r.text
    return r.json()


async def vectors(stack, movie_ids):
    """The stored vectors, read back from Chroma through the search service's engine."""
    import httpx

    from marquee_shared.chroma import open_collection

    _, collection = await open_collection(httpx.URL(stack["chroma"]), stack["collection"])  # type: ignore[arg-type]
    got = await collection.get(ids=[str(i) for i in movie_ids], include=["embeddings"])
    by_id = dict(zip(got["ids"], got["embeddings"], strict=True))
    return np.asarray([by_id[str(i)] for i in movie_ids], np.float32)


def mean_pairwise_distance(v: np.ndarray) -> float:
    pairs = list(itertools.combinations(range(len(v)), 2))
    return float(np.mean([1 - v[a] @ v[b] for a, b in pairs]))


@pytest.fixture
def discover(stack, chroma_url, collection_name):
    return {**stack, "chroma": chroma_url, "collection": collection_name}


async def test_two_tastes_both_come_back_and_seen_movies_never_do(discover):
    body = await recommend(discover, liked=HORROR_LIKES + MUSICAL_LIKES, seen=[9552], k=6)
    found = [h["tmdb_id"] for h in body["results"]]
    assert len(found) == 6
    assert not set(found) & {*HORROR_LIKES, *MUSICAL_LIKES, 9552}
    assert set(found) & (HORROR - {9552}), found  # the horror taste...
    assert set(found) & MUSICALS, found  # ...and the musical one
    # Each taste is one kind of film: horror and musicals are never mixed into one.
    tastes = [set(t["liked"]) for t in body["tastes"]]
    assert len(tastes) >= 2
    assert all(t <= HORROR or t <= MUSICALS for t in tastes), tastes
    for hit in body["results"]:
        assert hit["because"]
        assert set(hit["because"]) <= {*HORROR_LIKES, *MUSICAL_LIKES}


async def test_ratings_count_as_likes_dislikes_and_seen(discover):
    body = await recommend(
        discover,
        ratings=[
            {"tmdb_id": 694, "rating": 5},
            {"tmdb_id": 948, "rating": 4},
            {"tmdb_id": 1091, "rating": 3},  # neutral: seen, not a taste
            {"tmdb_id": 872, "rating": 1},  # disliked
        ],
        k=10,
    )
    found = [h["tmdb_id"] for h in body["results"]]
    assert not set(found) & {694, 948, 1091, 872}
    assert [set(t["liked"]) for t in body["tastes"]] == [{694, 948}]


async def test_dislikes_push_results_away(discover):
    # A Nightmare on Elm Street is close to The Shining (liked) and closer still to
    # Halloween: disliking Halloween must cost it more relevance than a musical far from
    # Halloween, and move it down the list. (The whole small catalog is ranked, k = 25.)
    plain = await recommend(discover, liked=[694], k=25, mmr_lambda=1.0)
    pushed = await recommend(discover, liked=[694], disliked=[948], k=25, mmr_lambda=1.0)
    before = {h["tmdb_id"]: h["score"] for h in plain["results"]}
    after = {h["tmdb_id"]: h["score"] for h in pushed["results"]}
    assert 948 not in after
    nightmare, musical = 377, 15121
    assert before[nightmare] - after[nightmare] > before[musical] - after[musical] + 0.03
    plain_ids = [h["tmdb_id"] for h in plain["results"]]
    pushed_ids = [h["tmdb_id"] for h in pushed["results"]]
    assert pushed_ids.index(nightmare) > plain_ids.index(nightmare), (plain_ids, pushed_ids)


async def test_lambda_changes_diversity(discover):
    liked = [694, 948]
    relevant = await recommend(discover, liked=liked, k=6, mmr_lambda=1.0)
    varied = await recommend(discover, liked=liked, k=6, mmr_lambda=0.2)
    relevant_ids = [h["tmdb_id"] for h in relevant["results"]]
    varied_ids = [h["tmdb_id"] for h in varied["results"]]
    d_relevant = mean_pairwise_distance(await vectors(discover, relevant_ids))
    d_varied = mean_pairwise_distance(await vectors(discover, varied_ids))
    assert d_varied > d_relevant + 0.02, (d_relevant, d_varied)


async def test_recommendation_filters_and_limits(discover):
    body = await recommend(
        discover, liked=HORROR_LIKES, k=10, filters={"genres": ["Music"], "year_min": 1970}
    )
    assert body["results"]
    for hit in body["results"]:
        assert "Music" in hit["genres"] and hit["year"] >= 1970

    body = await recommend(discover, liked=[694, 123456789], disliked=[987654], k=3)
    assert body["unknown_ids"] == [987654, 123456789] or set(body["unknown_ids"]) == {
        123456789,
        987654,
    }
    assert len(body["results"]) == 3

    url = discover["gateway"] + "/v1/recommendations"
    r = await post(url, {"liked": [123456789]})
    assert r.status_code == 404
    assert r.json()["detail"] == "none of the liked movies is in the catalog"
    r = await post(url, {"liked": list(range(1, MAX_TASTE_IDS + 2))})
    assert r.status_code == 422
    r = await post(url, {"disliked": [694]})
    assert r.status_code == 422
    assert "give the taste" in r.text
    r = await post(url, {"liked": [694], "k": 101})
    assert r.status_code == 422
    r = await post(url, {"liked": [694], "mmr_lambda": 1.5})
    assert r.status_code == 422


async def test_top_rated_is_not_won_by_a_few_perfect_votes(discover):
    url = discover["gateway"] + "/v1/browse/top-rated"
    r = await get(url, k=5)
    assert r.status_code == 200, r.text
    found = [h["tmdb_id"] for h in r.json()["results"]]
    assert TRAP not in found
    assert BY_ID[found[0]].vote_count > 1000
    scores = [h["score"] for h in r.json()["results"]]
    assert scores == sorted(scores, reverse=True)
    # Still listed, but below every film rated 8 or more by thousands.
    everything = await ids(url, k=100)
    for tmdb_id in everything[everything.index(TRAP) :]:
        assert BY_ID[tmdb_id].vote_average < 8.0 or BY_ID[tmdb_id].vote_count < 1000

    musicals = await ids(url, k=10, genres="Music", min_rating=7.5)
    assert musicals
    assert all("Music" in BY_ID[i].genres and BY_ID[i].vote_average >= 7.5 for i in musicals)


async def test_trending_follows_popularity(discover):
    found = await ids(discover["gateway"] + "/v1/browse/trending", k=5)
    by_popularity = sorted(BY_ID, key=lambda i: -(BY_ID[i].popularity or 0))[:5]
    assert found == by_popularity
    horror = await ids(discover["gateway"] + "/v1/browse/trending", k=3, genres="Horror")
    everything = sorted(BY_ID, key=lambda i: -(BY_ID[i].popularity or 0))
    assert horror == [i for i in everything if "Horror" in BY_ID[i].genres][:3]


async def test_similar_by_free_text(discover):
    r = await get(discover["gateway"] + "/v1/similar", q="singing and dancing in the streets", k=3)
    assert r.status_code == 200, r.text
    assert r.json()["mode"] == "semantic"
    assert {h["tmdb_id"] for h in r.json()["results"]} <= MUSICALS
    r = await get(discover["gateway"] + "/v1/similar", q="  ")
    assert r.status_code == 422


async def test_openapi_documents_discovery_with_examples(discover):
    spec = (await get(discover["gateway"] + "/openapi.json")).json()
    paths = spec["paths"]
    assert {
        "/v1/recommendations",
        "/v1/similar",
        "/v1/browse/trending",
        "/v1/browse/top-rated",
    } <= set(paths)
    examples = paths["/v1/recommendations"]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ]
    assert "two tastes" in examples
    search_params = {p["name"] for p in paths["/v1/search"]["get"]["parameters"]}
    assert {"mode", "min_votes"} <= search_params
