"""The global queue over HTTP: stats, the whole queue, health, capacity, and one order's position
(agentgate/queue.py does the work)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from agentgate import queue
from agentgate import search_attributes as sa
from api.deps import ClientDep, SettingsDep
from api.errors import ApiError, field_error
from workflows.admission import MAX_CAPACITY, QueueSnapshot, QueueStats

router = APIRouter(prefix="/api/v1", tags=["queue"])
UPDATE_TIMEOUT = 10.0


def _unavailable(exc: Exception) -> ApiError:
    return ApiError(503, "queue_unavailable", str(exc))


@router.get("/queue/stats")
async def stats(client: ClientDep, settings: SettingsDep) -> dict:
    """Queued and running counts, capacity, queued orders per priority (1 = most urgent), oldest wait."""
    try:
        current = await queue.stats(client, settings)
    except queue.QueueUnavailable as exc:
        if await queue.admission_status(client, settings) == "running":
            raise _unavailable(exc) from None
        # No queue yet (nothing submitted, no worker started): empty, at the configured capacity.
        current = QueueStats(capacity=settings.queue_capacity, queued=0, running=0)
        return {**queue.stats_view(current), "admission": "not_started"}
    return {**queue.stats_view(current), "admission": "running"}


@router.get("/queue")
async def snapshot(client: ClientDep, settings: SettingsDep) -> dict:
    """The whole queue at one instant: the stats, `positions` (every waiting order in admission order:
    `position` 1 is next, with `ahead` and `estimated_wait_seconds`) and `holders` (the orders holding a
    slot). One query of the admission workflow, so a page needs no per-order position call."""
    try:
        current = await queue.snapshot(client, settings)
    except queue.QueueUnavailable as exc:
        if await queue.admission_status(client, settings) == "running":
            raise _unavailable(exc) from None
        # No queue yet (nothing submitted, no worker started): empty, at the configured capacity.
        return {**queue.snapshot_view(QueueSnapshot(capacity=settings.queue_capacity)), "admission": "not_started"}
    return {**queue.snapshot_view(current), "admission": "running"}


@router.get(
    "/queue/health",
    responses={503: {"description": "unhealthy: the same body, with the reasons"}},
)
async def health(client: ClientDep, settings: SettingsDep) -> JSONResponse:
    """healthy / degraded (200) or unhealthy (503), with the reasons: workers polling, the admission
    workflow running and answering, the oldest wait under AGENTGATE_QUEUE_WAIT_WARN_SECONDS."""
    report = await queue.health(client, settings)
    return JSONResponse(report, status_code=503 if report["status"] == "unhealthy" else 200)


@router.put("/queue/capacity")
async def set_capacity(
    client: ClientDep,
    settings: SettingsDep,
    capacity: Annotated[int, Body(embed=True, ge=1, le=MAX_CAPACITY, description="Agent runs at once, all workers.")],
) -> dict:
    """Change the global capacity now. A larger one admits the next queued orders at once; a smaller
    one lets the runs holding slots finish (nothing is stopped) and admits no more until below it."""
    try:
        current = await asyncio.wait_for(queue.set_capacity(client, settings, capacity), timeout=UPDATE_TIMEOUT)
    except WorkflowUpdateFailedError as exc:
        raise field_error("body.capacity", str(exc.cause or exc)) from None
    except TimeoutError:
        raise _unavailable(
            f"the admission workflow did not answer within {UPDATE_TIMEOUT:g} s (is a worker polling "
            f"{settings.task_queue}?)"
        ) from None
    return {**queue.stats_view(current), "admission": "running"}


@router.get("/work-orders/{work_order_id}/position")
async def position(work_order_id: str, client: ClientDep, settings: SettingsDep) -> dict:
    """Where the order's current run stands: `position` 1 is next to get a slot (`ahead` orders before
    it), 0 holds a slot, null is not in the queue (finished, or between CI rounds); 404 for an unknown id."""
    try:
        desc = await client.get_workflow_handle(work_order_id).describe()
    except RPCError as err:
        if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise ApiError(404, "not_found", f"work order {work_order_id} does not exist") from None
        raise
    try:
        standing = await queue.standing(client, settings, work_order_id)
    except queue.QueueUnavailable as exc:
        if await queue.admission_status(client, settings) == "running":
            raise _unavailable(exc) from None
        standing = None
    view = queue.position_view(standing) if standing is not None and standing.run_id == desc.run_id else None
    status = desc.typed_search_attributes.get(sa.STATUS)
    if desc.status != WorkflowExecutionStatus.RUNNING:
        status = status if status in ("succeeded", "failed", "canceled") else "failed"
    base = {"id": work_order_id, "run_id": desc.run_id, "status": status}
    if view is None:
        return {**base, "queue_state": "absent", "position": None, "ahead": None, "estimated_wait_seconds": None}
    return {**view, **base}
