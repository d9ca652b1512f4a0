"""Thin HTTP layer of the explainer (internal; the gateway is the public face)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from marquee_explainer.service import Explainer
from marquee_shared.api import (
    Explanation,
    SearchHitExplanationRequest,
    TasteExplanationRequest,
)
from marquee_shared.jsonbody import StrictJSONRoute

router = APIRouter(route_class=StrictJSONRoute)


def get_explainer(request: Request) -> Explainer:
    explainer: Explainer = request.app.state.explainer
    return explainer


ExplainerDep = Annotated[Explainer, Depends(get_explainer)]


@router.post("/explanations")
async def explain_taste(body: TasteExplanationRequest, explainer: ExplainerDep) -> Explanation:
    return await explainer.explain_taste(body)


@router.post("/explanations/search-hit")
async def explain_search_hit(
    body: SearchHitExplanationRequest, explainer: ExplainerDep
) -> Explanation:
    return await explainer.explain_search_hit(body)
