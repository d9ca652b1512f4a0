"""Ingest settings, read once by the CLI entry point or the service's app factory (env prefix
``MARQUEE_INGEST_``)."""

from __future__ import annotations

import os
import socket
import uuid
from typing import TYPE_CHECKING, Literal

import structlog
from pydantic import AliasChoices, Field, HttpUrl, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from marquee_ingest.schedule import validate_cron
from marquee_shared.settings import CommonSettings

if TYPE_CHECKING:
    from collections.abc import Mapping

log = structlog.get_logger(__name__)

# Durations used to end in _SECONDS here and in _S in every other service; _S it is. The old
# names keep working until the release after 0.1, with a warning at startup
# (log_deprecated_names); when both are set, the new one wins.
DEPRECATED_NAMES = {
    "MARQUEE_INGEST_TMDB_TIMEOUT_SECONDS": "MARQUEE_INGEST_TMDB_TIMEOUT_S",
    "MARQUEE_INGEST_SYNC_INTERVAL_SECONDS": "MARQUEE_INGEST_SYNC_INTERVAL_S",
    "MARQUEE_INGEST_SYNC_LOCK_TTL_SECONDS": "MARQUEE_INGEST_SYNC_LOCK_TTL_S",
}


def _renamed(new: str) -> AliasChoices:
    """The variable ``new``, or the deprecated name it replaces."""
    (old,) = (o for o, n in DEPRECATED_NAMES.items() if n == new)
    return AliasChoices(new, old)


def deprecated_names_in(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The deprecated variables set in ``environ`` (the process's by default), each with the
    name to use instead. Case-insensitive, like the settings themselves."""
    present = {name.upper() for name in (os.environ if environ is None else environ)}
    return {old: new for old, new in DEPRECATED_NAMES.items() if old in present}


def log_deprecated_names() -> None:
    """One warning per deprecated variable set; call once logging is configured."""
    for old, new in deprecated_names_in().items():
        log.warning("deprecated_setting_name", name=old, use_instead=new)


def default_instance_name() -> str:
    # Names the lock holder in status output; unique per process so two replicas on one host
    # (or a CLI run beside the service) are told apart.
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class IngestSettings(CommonSettings):
    model_config = SettingsConfigDict(
        env_prefix="MARQUEE_INGEST_", extra="ignore", validate_by_name=True
    )

    # The plain TMDB_* names are what TMDB's own docs and most .env files use; accepting them
    # spares users a second copy of the same secret.
    tmdb_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("MARQUEE_INGEST_TMDB_API_KEY", "TMDB_API_KEY"),
        description="TMDB v3 API key, sent as the api_key query parameter.",
    )
    tmdb_read_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("MARQUEE_INGEST_TMDB_READ_TOKEN", "TMDB_READ_TOKEN"),
        description="TMDB v4 read access token, sent as a bearer token; preferred over the key.",
    )
    tmdb_base_url: HttpUrl = Field(default=HttpUrl("https://api.themoviedb.org/3"))
    tmdb_rate_per_second: float = Field(
        default=20.0,
        gt=0,
        le=1000,
        description="Request rate towards TMDB. TMDB tolerates about 40/s; stay well below.",
    )
    tmdb_max_retries: int = Field(default=5, ge=0, le=20)
    tmdb_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        validation_alias=_renamed("MARQUEE_INGEST_TMDB_TIMEOUT_S"),
        description="Per TMDB request.",
    )
    tmdb_concurrency: int = Field(default=8, ge=1, le=64)
    tmdb_language: str = Field(default="en-US", min_length=2, max_length=10)
    publish_batch_size: int = Field(
        default=500, ge=1, le=10_000, description="Events per pipelined XADD round trip."
    )

    # -- the scheduled TMDB sync (the service; `marquee-ingest sync` runs one by hand) ---------
    sync_interval_s: int = Field(
        default=3600,
        ge=0,
        le=31 * 24 * 3600,
        validation_alias=_renamed("MARQUEE_INGEST_SYNC_INTERVAL_S"),
        description="Seconds between scheduled syncs, counted from when the last sync (of any "
        "instance) finished; 0 disables the schedule (admin triggers still work).",
    )
    sync_cron: str | None = Field(
        default=None,
        description="A 5-field cron expression in UTC (e.g. '15 */6 * * *'); replaces the "
        "interval when set.",
    )
    sync_initial_list: Literal["popular", "discover", "top_rated"] = Field(
        default="popular", description="The TMDB list the first sync (no watermark) loads."
    )
    sync_initial_pages: int = Field(
        default=5, ge=1, le=500, description="Pages of that list, 20 movies each."
    )
    sync_max_requests: int = Field(
        default=10_000,
        ge=10,
        le=1_000_000,
        description="TMDB requests one sync may send; the rest of the window waits for the "
        "next run (progress within the window is kept).",
    )
    sync_window_days: int = Field(
        default=14,
        ge=1,
        le=14,
        description="Days of TMDB changes asked for at once (TMDB allows at most 14).",
    )
    sync_chunk_size: int = Field(
        default=200,
        ge=1,
        le=10_000,
        description="Changed movies fetched, then published, per step; progress is saved "
        "after each step.",
    )
    sync_lock_ttl_s: float = Field(
        default=60.0,
        ge=1.0,
        le=3600.0,
        validation_alias=_renamed("MARQUEE_INGEST_SYNC_LOCK_TTL_S"),
        description="Expiry of the sync lock, renewed while a sync runs: how long a crashed "
        "instance blocks the others.",
    )
    sync_seed_demo: bool = Field(
        default=False,
        description="At startup, publish the bundled demo catalog if ingest has published "
        "nothing yet (docker compose uses it so a fresh stack has movies to search).",
    )
    instance_name: str = Field(
        default_factory=default_instance_name,
        description="This process in lock and status output.",
    )

    @field_validator("tmdb_api_key", "tmdb_read_token", mode="after")
    @classmethod
    def _blank_secret_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        # `TMDB_API_KEY=` in a compose file or .env template means "not configured".
        if value is not None and not value.get_secret_value().strip():
            return None
        return value

    @field_validator("sync_cron", mode="after")
    @classmethod
    def _cron_parses(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return validate_cron(value)

    @property
    def has_tmdb_credentials(self) -> bool:
        return self.tmdb_api_key is not None or self.tmdb_read_token is not None
