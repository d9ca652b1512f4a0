"""``GET /stats``: how many movies the index holds and which model embedded them (the gateway's
``/v1/stats`` coverage and model)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from marquee_search.engine import SearchEngine
from marquee_search.routes import get_engine

router = APIRouter()


class IndexStats(BaseModel):
    movies: int = Field(description="Movies in the Chroma collection (embedded).", examples=[418])
    model: str = Field(
        description="The model this replica embeds queries with (name@version+digest).",
        examples=["all-MiniLM-L6-v2@0.1.0+9e9ef2af17f8"],
    )
    collection_model: str | None = Field(
        description="The model id stamped on the collection: the same model as ``model`` "
        "(same digest), or null for a collection from before model ids that no embedder has "
        "stamped yet.",
        examples=["all-MiniLM-L6-v2@0.1.0+9e9ef2af17f8"],
    )


@router.get("/stats", summary="How many movies are embedded, and by which model")
async def stats(
    request: Request, engine: Annotated[SearchEngine, Depends(get_engine)]
) -> IndexStats:
    guard = request.app.state.model_guard
    return IndexStats(
        movies=await engine.count(),
        model=str(guard.model),
        collection_model=guard.collection_model,
    )
