"""The explainer's request models (one definition in marquee_shared.api, validated by the gateway
before the hop and by the explainer again) and its settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from marquee_explainer.settings import ExplainerSettings
from marquee_shared.api import (
    MAX_QUERY_CHARS,
    SearchHitExplanationRequest,
    TasteExplanationRequest,
)


def test_taste_from_ids_and_ratings():
    request = TasteExplanationRequest(
        target_id=1,
        liked=[2, 3, 1],
        disliked=[4],
        ratings=[
            {"tmdb_id": 5, "rating": 4.0},
            {"tmdb_id": 6, "rating": 5.0},
            {"tmdb_id": 7, "rating": 3.0},
            {"tmdb_id": 8, "rating": 2.0},
            {"tmdb_id": 3, "rating": 4.5},
        ],
    )
    # Explicit likes first, then ratings best first; the target and duplicates dropped.
    assert request.liked_ids() == [2, 3, 6, 5]
    assert request.disliked_ids() == [4, 8]


@pytest.mark.parametrize(
    "body",
    [
        {"target_id": 1},
        {"target_id": 1, "liked": list(range(2, 53))},
        {"target_id": 1, "liked": [0]},
        {"target_id": 1, "ratings": [{"tmdb_id": 2, "rating": 6}]},
        {"target_id": 1, "liked": [2], "mood": "happy"},
    ],
)
def test_invalid_taste_requests(body):
    with pytest.raises(ValidationError):
        TasteExplanationRequest.model_validate(body)


def test_search_hit_requests_need_a_query():
    with pytest.raises(ValidationError):
        SearchHitExplanationRequest(query="   ", tmdb_id=1)
    with pytest.raises(ValidationError):
        SearchHitExplanationRequest(query="x" * (MAX_QUERY_CHARS + 1), tmdb_id=1)


def test_settings_default_to_the_deterministic_explainer(monkeypatch):
    for name in ("ANTHROPIC_API_KEY", "MARQUEE_EXPLAINER_ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = ExplainerSettings()
    assert settings.anthropic_api_key is None
    assert settings.anthropic_base_url is None
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("MARQUEE_EXPLAINER_MODEL", "claude-sonnet-4-5")
    monkeypatch.setenv("MARQUEE_EXPLAINER_TIMEOUT_S", "3.5")
    settings = ExplainerSettings()
    assert settings.anthropic_api_key is not None
    assert settings.anthropic_api_key.get_secret_value() == "sk-test"
    assert str(settings.anthropic_base_url) == "http://127.0.0.1:9999/"
    assert settings.model == "claude-sonnet-4-5"
    assert settings.timeout_s == 3.5
    assert "sk-test" not in repr(settings)
