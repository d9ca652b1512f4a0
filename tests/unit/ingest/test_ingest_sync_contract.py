"""The gateway mirrors the ingest service's admin models (its image ships without ingest): the
schemas must stay equal, or /v1/admin/sync and /v1/stats misread the ingest service."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from marquee_gateway import routes_admin
from marquee_ingest import routes, sync


@pytest.mark.parametrize(
    ("ingest_model", "gateway_model"),
    [
        (sync.SyncRun, routes_admin.SyncRun),
        (sync.SyncStatus, routes_admin.SyncStatus),
        (routes.SyncStarted, routes_admin.SyncStarted),
    ],
    ids=["SyncRun", "SyncStatus", "SyncStarted"],
)
def test_the_gateway_mirror_matches_the_ingest_model(
    ingest_model: type[BaseModel], gateway_model: type[BaseModel]
) -> None:
    assert gateway_model.model_json_schema() == ingest_model.model_json_schema()
