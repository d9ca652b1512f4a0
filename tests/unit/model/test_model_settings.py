"""Embedder and search choose their model with MODEL (stock by default); the deprecated
MODEL_PATH still works and, when set, wins (the apps resolve ``model_path or model``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from marquee_embedder.settings import EmbedderSettings
from marquee_search.settings import SearchSettings


@pytest.mark.parametrize(
    ("settings", "prefix"), [(EmbedderSettings, "EMBEDDER"), (SearchSettings, "SEARCH")]
)
def test_model_defaults_to_stock_and_reads_its_variable(
    settings: type[EmbedderSettings | SearchSettings], prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert settings().model == "stock"
    assert settings().model_path is None
    monkeypatch.setenv(f"MARQUEE_{prefix}_MODEL", "movie-tuned")
    monkeypatch.setenv(f"MARQUEE_{prefix}_MODEL_PATH", "/models/old")
    chosen = settings()
    assert chosen.model == "movie-tuned"
    assert (chosen.model_path or chosen.model) == Path("/models/old")
    assert "deprecated" in settings.model_fields["model_path"].description.lower()
