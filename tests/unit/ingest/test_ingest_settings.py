"""IngestSettings: env names, TMDB's plain variable names, blank secrets."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from marquee_ingest.settings import (
    DEPRECATED_NAMES,
    IngestSettings,
    deprecated_names_in,
    log_deprecated_names,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "TMDB_API_KEY",
        "TMDB_READ_TOKEN",
        "MARQUEE_INGEST_TMDB_API_KEY",
        "MARQUEE_INGEST_TMDB_READ_TOKEN",
        "MARQUEE_INGEST_TMDB_RATE_PER_SECOND",
        *(n for n in os.environ if n.startswith("MARQUEE_INGEST_TMDB_TIMEOUT_")),
        *(n for n in os.environ if n.startswith("MARQUEE_INGEST_SYNC_")),
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


def test_sync_defaults() -> None:
    settings = IngestSettings()

    assert settings.sync_interval_s == 3600
    assert settings.sync_cron is None
    assert settings.sync_initial_list == "popular"
    assert settings.sync_initial_pages == 5
    assert settings.sync_max_requests == 10_000
    assert settings.sync_window_days == 14
    assert settings.sync_seed_demo is False
    assert settings.has_tmdb_credentials is False
    # Unique per process: two replicas on one host are told apart in the lock and status.
    assert settings.instance_name != IngestSettings().instance_name


def test_sync_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARQUEE_INGEST_SYNC_CRON", "0 */6 * * *")
    monkeypatch.setenv("MARQUEE_INGEST_SYNC_INTERVAL_S", "0")
    monkeypatch.setenv("MARQUEE_INGEST_SYNC_SEED_DEMO", "true")
    monkeypatch.setenv("TMDB_API_KEY", "k")

    settings = IngestSettings()

    assert settings.sync_cron == "0 */6 * * *"
    assert settings.sync_interval_s == 0
    assert settings.sync_seed_demo is True
    assert settings.has_tmdb_credentials


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sync_window_days", 15),  # TMDB serves at most 14 days of changes
        ("sync_window_days", 0),
        ("sync_max_requests", 5),
        ("sync_chunk_size", 0),
        ("sync_interval_s", -1),
        ("sync_initial_list", "upcoming"),
    ],
)
def test_sync_settings_out_of_range_are_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        IngestSettings(**{field: value})


DURATIONS = [
    # (the name, the deprecated name it replaces, the field, a value)
    ("MARQUEE_INGEST_TMDB_TIMEOUT_S", "MARQUEE_INGEST_TMDB_TIMEOUT_SECONDS", "tmdb_timeout_s", 2.5),
    (
        "MARQUEE_INGEST_SYNC_INTERVAL_S",
        "MARQUEE_INGEST_SYNC_INTERVAL_SECONDS",
        "sync_interval_s",
        0,
    ),
    (
        "MARQUEE_INGEST_SYNC_LOCK_TTL_S",
        "MARQUEE_INGEST_SYNC_LOCK_TTL_SECONDS",
        "sync_lock_ttl_s",
        7,
    ),
]


@pytest.mark.parametrize("deprecated", [False, True], ids=["new_name", "old_name"])
@pytest.mark.parametrize(("name", "old", "field", "value"), DURATIONS)
def test_durations_end_in_s_and_the_old_seconds_names_still_work_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    old: str,
    field: str,
    value: float,
    deprecated: bool,
) -> None:
    monkeypatch.setenv(old if deprecated else name, str(value))

    assert getattr(IngestSettings(), field) == value
    with capture_logs() as logs:
        log_deprecated_names()
    warning = {"event": "deprecated_setting_name", "log_level": "warning"}
    assert logs == ([{**warning, "name": old, "use_instead": name}] if deprecated else [])
    assert DEPRECATED_NAMES[old] == name


def test_the_new_name_wins_over_the_old(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARQUEE_INGEST_SYNC_INTERVAL_SECONDS", "60")
    monkeypatch.setenv("MARQUEE_INGEST_SYNC_INTERVAL_S", "120")

    assert IngestSettings().sync_interval_s == 120


def test_deprecated_names_are_found_in_any_case() -> None:
    environ = {"marquee_ingest_sync_interval_seconds": "60", "PATH": "/bin"}

    assert deprecated_names_in(environ) == {
        "MARQUEE_INGEST_SYNC_INTERVAL_SECONDS": "MARQUEE_INGEST_SYNC_INTERVAL_S"
    }
