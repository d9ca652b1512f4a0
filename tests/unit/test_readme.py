"""The README is for users; keep it true: every setting a service reads is documented there,
and it shows the command CI runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from marquee_embedder.settings import EmbedderSettings
from marquee_explainer.settings import ExplainerSettings
from marquee_gateway.settings import GatewaySettings
from marquee_ingest.settings import IngestSettings
from marquee_search.settings import SearchSettings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def env_names(settings: type[BaseSettings]) -> list[str]:
    prefix = settings.model_config.get("env_prefix", "")
    names = []
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if alias is None:
            names.append((prefix + name).upper())
        elif isinstance(alias, str):
            names.append(alias)
        else:
            names.append(str(alias.choices[0]))
    return names


@pytest.mark.parametrize(
    "settings",
    [GatewaySettings, SearchSettings, EmbedderSettings, IngestSettings, ExplainerSettings],
)
def test_every_environment_variable_is_in_the_readme(settings):
    missing = [n for n in env_names(settings) if f"`{n}`" not in README]
    assert not missing, f"document these in README.md: {missing}"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "make test" in README
