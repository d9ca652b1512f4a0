"""Each internal service's app factory installs its ASGI middleware once: a middleware added
twice runs twice on every request (the token compared, the request logged, twice)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr

from marquee_explainer.app import create_app as create_explainer
from marquee_explainer.settings import ExplainerSettings
from marquee_ingest.app import create_app as create_ingest
from marquee_ingest.settings import IngestSettings
from marquee_search.app import create_app as create_search
from marquee_search.settings import SearchSettings
from marquee_shared.internal_auth import InternalTokenMiddleware
from marquee_shared.requests import RequestContextMiddleware

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi import FastAPI

TOKEN = SecretStr("unit-test-token")


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(
            lambda: create_explainer(ExplainerSettings(internal_token=TOKEN)), id="explainer"
        ),
        pytest.param(lambda: create_ingest(IngestSettings(internal_token=TOKEN)), id="ingest"),
        pytest.param(lambda: create_search(SearchSettings(internal_token=TOKEN)), id="search"),
    ],
)
def test_internal_services_install_each_middleware_once(build: Callable[[], FastAPI]) -> None:
    installed: Counter[object] = Counter(m.cls for m in build().user_middleware)
    assert installed[InternalTokenMiddleware] == 1
    assert installed[RequestContextMiddleware] == 1
    assert max(installed.values()) == 1
