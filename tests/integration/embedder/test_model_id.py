"""The embedder and the model id stamped on the collection: it stamps a collection it creates
(or an old one without a stamp), reports the id in /ready and /metrics, and refuses to start
against a collection of another model. Real Redis and Chroma."""

from __future__ import annotations

import httpx
import pytest

from marquee_embedder.app import create_app
from marquee_embedder.settings import EmbedderSettings
from marquee_shared.model.resolve import resolve_model
from tests.support.asgi import serve
from tests.support.chroma import create_collection, stamp_of

pytestmark = pytest.mark.integration

OTHER = "movie-tuned@1+0123456789ab"


def settings_for(redis_url: str, chroma_url: str, collection: str) -> EmbedderSettings:
    return EmbedderSettings(
        redis_url=redis_url,
        chroma_url=chroma_url,
        chroma_collection=collection,
        poll_ms=100,
        log_format="json",
    )


async def test_a_new_collection_is_stamped_and_the_id_reported(
    redis, redis_url, chroma_url, collection_name, encoder
):
    stock = str(resolve_model("stock")[1])
    app = create_app(settings_for(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        ready = await client.get("/ready")
        metrics = (await client.get("/metrics")).text

    assert ready.status_code == 200, ready.text
    assert ready.json()["model"] == stock
    assert f'marquee_model_info{{model="{stock}",service="embedder"}} 1.0' in metrics
    assert stamp_of(chroma_url, collection_name) == stock


async def test_a_collection_from_before_model_ids_is_stamped_with_the_configured_model(
    redis, redis_url, chroma_url, collection_name, encoder
):
    create_collection(chroma_url, collection_name, None, records=2)
    app = create_app(settings_for(redis_url, chroma_url, collection_name), encoder=encoder)
    async with serve(app):
        pass
    assert stamp_of(chroma_url, collection_name) == str(resolve_model("stock")[1])


async def test_refuses_to_start_against_a_collection_of_another_model(
    redis, redis_url, chroma_url, collection_name, encoder
):
    create_collection(chroma_url, collection_name, OTHER)
    stock = str(resolve_model("stock")[1])
    app = create_app(settings_for(redis_url, chroma_url, collection_name), encoder=encoder)
    with pytest.raises(RuntimeError, match="exited during startup") as refused:
        async with serve(app):
            pass
    reason = str(refused.value)
    assert "ModelMismatchError" in reason
    assert f"holds vectors of model {OTHER}" in reason
    assert f"configured with model {stock}" in reason
    assert "MARQUEE_EMBEDDER_MODEL" in reason
    assert stamp_of(chroma_url, collection_name) == OTHER  # left as it was
