from __future__ import annotations

from pathlib import Path

import pytest

from marquee_shared.model.identity import ModelId
from tests.support.models import alt_model as make_alt_model


@pytest.fixture(scope="session")
def alt_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ModelId]:
    """A second model (another id than the stock one) to migrate to."""
    return make_alt_model(tmp_path_factory.mktemp("models") / "stock-alt")


@pytest.fixture
def cli_env(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, chroma_url: str, collection_name: str
) -> None:
    """``marquee-embedder migrate`` reads its settings from the environment."""
    monkeypatch.setenv("MARQUEE_REDIS_URL", redis_url)
    monkeypatch.setenv("MARQUEE_CHROMA_URL", chroma_url)
    monkeypatch.setenv("MARQUEE_CHROMA_COLLECTION", collection_name)
    monkeypatch.setenv("MARQUEE_EMBEDDER_MODEL", "stock")
