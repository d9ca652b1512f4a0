"""The learned ranker in the real search service: descriptions are re-ordered by it (and the
response says which model answered), titles and names keep the fusion's order, a model file
that cannot serve stops startup with its reason, and similar movies keep a quality floor."""

from __future__ import annotations

import pytest

from marquee_search.app import create_app as create_search
from marquee_search.ranker import DEFAULT_MODEL, LearnedRanker, RankerModelError
from tests.integration.search.movies import MOVIES
from tests.support.asgi import serve
from tests.support.search import get, search_settings
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration

DESCRIPTION = (
    "I remember a movie about a huge shark that attacks swimmers at a beach town during the "
    "summer, and the police chief, a scientist and an old fisherman go out on a boat to hunt it"
)


async def test_a_description_is_ordered_by_the_learned_ranker(stack) -> None:
    r = await get(stack["search"] + "/search", q=DESCRIPTION, k=5)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ranker"] == LearnedRanker(DEFAULT_MODEL).version
    assert body["ranker"].startswith("lambdarank-")
    assert body["results"][0]["title"] == "Jaws"
    scores = [h["score"] for h in body["results"]]
    assert scores == sorted(scores, reverse=True)
    # The gateway relays the field: the public API says which ranker answered.
    public = await get(stack["gateway"] + "/v1/search", q=DESCRIPTION, k=5)
    assert public.json()["ranker"] == body["ranker"]


async def test_titles_and_names_keep_the_fusion_order(stack) -> None:
    for q in ("jaws", "the shinign", "stanley kubrick"):
        r = await get(stack["search"] + "/search", q=q, k=5)
        assert r.status_code == 200, r.text
        assert r.json()["ranker"] == "fusion", q
    semantic = await get(stack["search"] + "/search", q=DESCRIPTION, k=5, mode="semantic")
    assert semantic.json()["ranker"] == "dense"


async def test_the_ranker_can_be_turned_off(
    redis_url, chroma_url, collection_name, encoder, catalog
):
    settings = search_settings(redis_url, chroma_url, collection_name)
    settings = settings.model_copy(update={"ranker_model": None})
    async with serve(create_search(settings, encoder=encoder)) as url:
        r = await get(url + "/search", q=DESCRIPTION, k=5)
    assert r.json()["ranker"] == "fusion"
    assert r.json()["results"][0]["title"] == "Jaws"


async def test_a_model_trained_on_other_features_stops_startup(
    tmp_path, redis_url, chroma_url, collection_name, encoder
):
    text = DEFAULT_MODEL.read_text()
    # The same model, one feature renamed: the code would feed it the wrong columns.
    broken = tmp_path / "ranker.txt"
    broken.write_text(text.replace("dense_head", "dense_first", 1))
    settings = search_settings(redis_url, chroma_url, collection_name)
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("not a model")
    for path, reason in (
        (broken, "trained on other features"),
        (garbage, "cannot load the ranker"),
    ):
        app = create_search(settings.model_copy(update={"ranker_model": path}), encoder=encoder)
        # The app's own lifespan, as uvicorn runs it at startup (uvicorn turns the error into
        # exit code 3 after logging it).
        with pytest.raises(RankerModelError, match=reason):
            async with app.router.lifespan_context(app):
                pass


async def test_similar_movies_keep_a_quality_floor(stack, catalog) -> None:
    # A flop that reads almost exactly like Jaws: 1.5 stars from 4 votes.
    jaws = next(m for m in MOVIES if m.tmdb_id == 578)
    lookalike = jaws.model_copy(
        update={
            "tmdb_id": 990001,
            "title": "Jaws of the Deep",
            "vote_average": 1.5,
            "vote_count": 4,
        }
    )
    await catalog.put([lookalike])

    async def similar(**params: object) -> list[int]:
        r = await get(stack["search"] + "/movies/578/similar", k=10, **params)
        assert r.status_code == 200, r.text
        return [h["tmdb_id"] for h in r.json()["results"]]

    async def visible() -> None:
        # The caller's own filter replaces the floor: now the flop may be shown.
        assert 990001 in await similar(min_votes=0)

    await eventually(visible)
    assert 990001 not in await similar()


LONG = (
    "Okay so this has been bugging me for weeks. I watched it on TV at my grandparents' place "
    "when I was maybe eight or nine, so it must have been the late 70s or early 80s. "
    "I remember a quiet beach town on an island in the summer, lots of tourists. "
    "Something in the water kept killing swimmers, and the mayor refused to close the "
    "beaches because the town needed the money. "
    "The police chief was afraid of the water but went out anyway on a small fishing boat "
    "with a young scientist and a grumpy old fisherman who told a story about a warship. "
    "There was a scene where they shot barrels into the creature so it could not dive. "
    "At the end the boat was sinking and the chief shot an air tank in its mouth. "
    "The music was just two notes getting faster and faster, and everyone knows it."
)


@pytest.mark.parametrize("exact_max_movies", [100_000, 0], ids=["in-memory", "chroma"])
async def test_a_long_description_is_windowed_and_ranked_on_both_dense_paths(
    redis_url, chroma_url, collection_name, encoder, catalog, exact_max_movies
):
    settings = search_settings(redis_url, chroma_url, collection_name)
    settings = settings.model_copy(update={"exact_max_movies": exact_max_movies})
    app = create_search(settings, encoder=encoder)
    async with serve(app) as url:
        engine = app.state.engine
        assert len(engine.windows(LONG)) > 2, "longer than one window: encoded as several"
        r = await get(url + "/search", q=LONG, k=5)
        assert r.status_code == 200, r.text
        assert r.json()["ranker"].startswith("lambdarank-")
        assert r.json()["results"][0]["title"] == "Jaws"
