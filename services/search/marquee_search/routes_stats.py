"""``GET /stats``: how many movies the index holds (the gateway's ``/v1/stats`` coverage)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from marquee_search.engine import SearchEngine
from marquee_search.routes import get_engine

router = APIRouter()


class IndexStats(BaseModel):
    movies: int = Field(description="Movies in the Chroma collection (embedded).", examples=[418])


@router.get("/stats", summary="How many movies are embedded")
async def stats(engine: Annotated[SearchEngine, Depends(get_engine)]) -> IndexStats:
    return IndexStats(movies=await engine.count())
