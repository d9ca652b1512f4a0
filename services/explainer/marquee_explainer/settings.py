"""Explainer settings, read once at startup (env prefix ``MARQUEE_EXPLAINER_``)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from marquee_shared.settings import CommonSettings


class ExplainerSettings(CommonSettings):
    model_config = SettingsConfigDict(
        env_prefix="MARQUEE_EXPLAINER_", extra="ignore", validate_by_name=True
    )
