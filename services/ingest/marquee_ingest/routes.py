"""Internal admin endpoints of the ingest service (the gateway exposes them behind its API key)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel

from marquee_ingest.service import SyncBusyError, SyncNotConfiguredError, SyncService
from marquee_shared.api import SyncStarted, SyncStatus

router = APIRouter(prefix="/admin")


def _service(request: Request) -> SyncService:
    service: SyncService = request.app.state.sync_service
    return service


Service = Annotated[SyncService, Depends(_service)]


class ErrorResponse(BaseModel):
    detail: str


CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorResponse,
        "description": "A sync is running already, or TMDB credentials are not configured.",
    }
}


@router.post(
    "/sync",
    status_code=202,
    response_model=SyncStarted,
    responses=CONFLICT,
    summary="Start a TMDB sync now",
    description="Starts an incremental sync in the background (the initial load if none ever "
    "ran). Poll GET /admin/sync for its progress and result.",
)
async def start_sync(service: Service) -> SyncStarted:
    try:
        run_id = await service.trigger("admin")
    except (SyncBusyError, SyncNotConfiguredError) as exc:
        raise HTTPException(409, str(exc)) from exc
    return SyncStarted(run_id=run_id, instance=service.sync.instance)


@router.get("/sync", summary="Where the TMDB sync stands")
async def sync_status(service: Service) -> SyncStatus:
    return await service.status()
