"""The catalog title index, built from the records in a real Chroma collection."""

from __future__ import annotations

import httpx
import pytest

from marquee_explainer.catalog import Catalog, CatalogTitles
from marquee_shared.chroma import open_collection
from tests.support.explainer import MOVIES, index_movies, movie

pytestmark = pytest.mark.integration


async def test_built_from_every_record_and_rebuilt_when_the_catalog_changes(
    chroma_url, redis_url, encoder, fresh_collection
):
    _, collection = await open_collection(httpx.URL(chroma_url), fresh_collection)  # type: ignore[arg-type]
    titles = CatalogTitles(Catalog(collection), refresh_s=3600)
    await titles.refresh()
    assert len(titles.index) == len({m.title for m in MOVIES})
    assert titles.index.ids_for("the dark knight rises") == {49026}
    assert not await titles.refresh_if_stale()  # nothing changed

    await index_movies(
        chroma_url, fresh_collection, redis_url, encoder, [movie(1402, "Vertigo", 1958)]
    )
    assert await titles.refresh_if_stale()  # one more record: rebuilt before the interval
    assert titles.index.ids_for("Vertigo") == {1402}
