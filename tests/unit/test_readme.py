"""The user docs stay true: every setting a service reads is in docs/configuration.md (the
README points there and keeps to what a first run needs), and the README shows the command CI
runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from marquee_embedder.settings import EmbedderSettings
from marquee_explainer.settings import ExplainerSettings
from marquee_gateway.settings import GatewaySettings
from marquee_ingest.settings import DEPRECATED_NAMES, IngestSettings
from marquee_search.settings import SearchSettings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()


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
def test_every_environment_variable_is_documented(settings):
    missing = [n for n in env_names(settings) if f"`{n}`" not in CONFIGURATION]
    assert not missing, f"document these in docs/configuration.md: {missing}"


def test_deprecated_names_are_documented_with_their_replacements():
    for old, new in DEPRECATED_NAMES.items():
        assert f"| `{old}` | `{new}` |" in CONFIGURATION


def test_the_readme_points_to_the_configuration_page():
    assert "(docs/configuration.md)" in README


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "make test" in README
