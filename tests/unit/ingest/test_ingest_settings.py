"""IngestSettings: env names, TMDB's plain variable names, blank secrets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from marquee_ingest.settings import IngestSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "TMDB_API_KEY",
        "TMDB_READ_TOKEN",
        "MARQUEE_INGEST_TMDB_API_KEY",
        "MARQUEE_INGEST_TMDB_READ_TOKEN",
        "MARQUEE_INGEST_TMDB_RATE_PER_SECOND",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = IngestSettings()

    assert settings.tmdb_api_key is None
    assert settings.tmdb_read_token is None
    assert str(settings.tmdb_base_url) == "https://api.themoviedb.org/3"
    assert settings.tmdb_rate_per_second == 20
    assert settings.publish_batch_size == 500


def test_plain_tmdb_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMDB_API_KEY", "k")
    monkeypatch.setenv("TMDB_READ_TOKEN", "t")

    settings = IngestSettings()

    assert settings.tmdb_api_key is not None
    assert settings.tmdb_api_key.get_secret_value() == "k"
    assert settings.tmdb_read_token is not None
    assert settings.tmdb_read_token.get_secret_value() == "t"
    assert "k" not in repr(settings.tmdb_api_key)


def test_prefixed_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARQUEE_INGEST_TMDB_API_KEY", "prefixed")
    monkeypatch.setenv("MARQUEE_INGEST_TMDB_RATE_PER_SECOND", "5.5")

    settings = IngestSettings()

    assert settings.tmdb_api_key is not None
    assert settings.tmdb_api_key.get_secret_value() == "prefixed"
    assert settings.tmdb_rate_per_second == 5.5


def test_blank_secret_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMDB_API_KEY", "  ")

    assert IngestSettings().tmdb_api_key is None


def test_nonsense_is_refused() -> None:
    with pytest.raises(ValidationError, match="tmdb_rate_per_second"):
        IngestSettings(tmdb_rate_per_second=0)
