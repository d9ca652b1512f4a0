"""The title index over the explainer's test catalog (tests/support/explainer_catalog.py)."""

from __future__ import annotations

import pytest

from marquee_explainer.titles import TitleIndex
from tests.support.explainer_catalog import CATALOG


@pytest.fixture
def index() -> TitleIndex:
    return TitleIndex.build(((m.tmdb_id, m.title) for m in CATALOG), [m.overview for m in CATALOG])
