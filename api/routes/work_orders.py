"""Work-order routes: submit, read, list, cancel."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Query, Response
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from agentgate import queue, service
from agentgate.models import LocalSource, RunOutcome, WorkOrderRequest
from api.deps import ClientDep, SettingsDep
from api.errors import ApiError, field_error
from api.pagination import decode_cursor, encode_cursor, invalid_cursor
from api.routes.profiles import resolve_submission

router = APIRouter(prefix="/api/v1/work-orders", tags=["work-orders"])
# Filter values go into a Temporal visibility query between double quotes: no quotes or backslashes.
_FILTER_VALUE = r"""^[^"'\\]*$"""


def validated_request(body: WorkOrderRequest, settings: SettingsDep) -> WorkOrderRequest:
    """Checks that need the host: a local source must be a git repository the workers can read."""
    src = body.workspace_source
    if isinstance(src, LocalSource) and settings.validate_local_paths:
        path = Path(src.path).expanduser()
        if not path.is_absolute():
            raise field_error("body.workspace_source.path", f"{src.path!r} must be an absolute path")
        if not path.is_dir():
            raise field_error("body.workspace_source.path", f"{src.path!r} does not exist or is not a directory")
        if not (path / ".git").exists():
            raise field_error(
                "body.workspace_source.path", f"{src.path!r} is not a git repository (run `git init` there first)"
            )
    return body


ValidRequest = Annotated[WorkOrderRequest, Depends(validated_request)]


def _summary(outcome: RunOutcome, settings) -> dict:
    data = outcome.model_dump(mode="json")
    data["id"] = outcome.work_order_id
    folder = service.artifacts_dir(settings, outcome)
    data["links"] = {
        "temporal_ui": settings.workflow_ui_url(outcome.work_order_id, outcome.run_id),
        "artifacts": str(folder),
    }
    # The run's state comes from Temporal, so a lost or purged folder never breaks reading it; say so instead.
    ran = outcome.iterations > 0 and outcome.status.value not in ("queued", "running")
    data["warnings"] = []
    if ran and not folder.is_dir():
        data["warnings"].append(
            f"the artifacts folder {folder} is gone (purged, lost or on another host's volume): "
            "the run's state here is intact; `agentgate doctor` reports such orphans"
        )
    return data


@router.post("", status_code=201)
async def submit(
    body: ValidRequest,
    client: ClientDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict:
    """Start a run at once. With `Idempotency-Key`, the same key returns the same work order (200)."""
    body, profile_hash = resolve_submission(body, settings)  # the profile's values under the caller's fields
    order = service.make_work_order(body, idempotency_key, profile_hash=profile_hash)
    handle, created = await service.start_work_order(client, settings, order)
    response.headers["Location"] = f"/api/v1/work-orders/{order.id}"
    status = "queued"
    if not created:
        response.status_code = 200
        status = (await service.get_outcome(client, settings, order.id)).status.value
    # Position in the global queue: 1 = next to get a slot, 0 = holds one, null = not queued / not known yet.
    standing = await service.join_queue(client, settings, order, handle, created)
    return {
        "id": order.id,
        "status": status,
        "created": created,
        "position": standing.position if standing else None,
        "links": {"self": f"/api/v1/work-orders/{order.id}", "temporal_ui": settings.workflow_ui_url(order.id)},
    }


def _utc_bound(name: str, value: datetime | None) -> datetime | None:
    """A time filter in UTC (naive means UTC); a value that cannot be moved to UTC is the caller's 422."""
    if value is None:
        return None
    try:
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except (OverflowError, ValueError):
        raise field_error(f"query.{name}", f"{value.isoformat()} is out of range") from None


@router.get("")
async def list_orders(
    client: ClientDep,
    settings: SettingsDep,
    status: Annotated[str | None, Query(pattern="^(queued|running|succeeded|failed|canceled)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    agent: Annotated[str | None, Query(max_length=64, pattern=_FILTER_VALUE)] = None,
    repository: Annotated[str | None, Query(max_length=200, pattern=_FILTER_VALUE)] = None,
    label: Annotated[str | None, Query(max_length=64, pattern=_FILTER_VALUE)] = None,
    created_after: Annotated[datetime | None, Query(description="ISO 8601; orders started at or after it.")] = None,
    created_before: Annotated[datetime | None, Query(description="ISO 8601; orders started before it.")] = None,
    cursor: Annotated[str | None, Query(max_length=4096, description="`next_cursor` of the previous page.")] = None,
) -> dict:
    """Newest first, from Temporal visibility; pass `next_cursor` back as `cursor` for the next page (null: no more)."""
    created_after = _utc_bound("created_after", created_after)
    created_before = _utc_bound("created_before", created_before)
    if created_after and created_before and created_after >= created_before:
        raise field_error("query.created_before", "must be later than created_after")
    try:
        query = service.work_order_query(
            status=status,
            agent=agent,
            repository=repository,
            label=label,
            created_after=created_after,
            created_before=created_before,
        )
    except (ValueError, OverflowError) as exc:
        raise field_error("query", f"cannot filter on these values: {exc}") from None
    token = decode_cursor(settings, query, cursor) if cursor else None
    try:
        items, next_token = await service.list_work_orders_page(client, query, limit=limit, page_token=token)
    except RPCError as err:
        if err.status != RPCStatusCode.INVALID_ARGUMENT:
            raise
        if token is not None:
            raise invalid_cursor(f"Temporal refused it ({err.message})") from None
        raise field_error("query", f"Temporal refused the filter: {err.message}") from None
    return {"items": items, "next_cursor": encode_cursor(settings, query, next_token)}


@router.get("/{work_order_id}")
async def get_order(work_order_id: str, client: ClientDep, settings: SettingsDep) -> dict:
    try:
        outcome = await service.get_outcome(client, settings, work_order_id)
    except service.WorkOrderNotFound:
        raise ApiError(404, "not_found", f"work order {work_order_id} does not exist") from None
    return _summary(outcome, settings)


async def _running_handle(client, work_order_id: str):
    handle = client.get_workflow_handle(work_order_id)
    try:
        desc = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise ApiError(404, "not_found", f"work order {work_order_id} does not exist") from None
        raise
    if desc.status != WorkflowExecutionStatus.RUNNING:
        raise ApiError(409, "conflict", f"work order {work_order_id} already finished ({desc.status.name.lower()})")
    return handle


@router.post("/{work_order_id}/kill", status_code=202)
async def kill(
    work_order_id: str,
    client: ClientDep,
    settings: SettingsDep,
    reason: Annotated[str, Body(embed=True, min_length=1, max_length=2000)] = "killed by operator",
) -> dict:
    """Force: terminate the workflow now. The agent activity's next heartbeat fails, which stops its process tree."""
    handle = await _running_handle(client, work_order_id)
    await handle.terminate(reason=reason)
    # A terminated run cannot give its queue slot back itself: free it now (the queue's reconcile is the backstop).
    try:
        await queue.release(client, settings, work_order_id, None, f"killed: {reason}")
    except RPCError:
        pass
    return {"id": work_order_id, "status": "killed", "reason": reason}


@router.post("/{work_order_id}/runs", status_code=201)
async def rerun(work_order_id: str, client: ClientDep, settings: SettingsDep) -> dict:
    """Run a finished work order again: a new run of the same id; earlier runs stay in history."""
    try:
        handle = await service.rerun_work_order(client, settings, work_order_id)
    except service.WorkOrderNotFound:
        raise ApiError(404, "not_found", f"work order {work_order_id} does not exist") from None
    except service.WorkOrderConflict as exc:
        raise ApiError(409, "conflict", str(exc)) from None
    desc = await handle.describe()
    return {"id": work_order_id, "run_id": desc.run_id, "status": "queued"}


@router.get("/{work_order_id}/runs")
async def runs(work_order_id: str, client: ClientDep) -> dict:
    items = await service.list_runs(client, work_order_id)
    if not items:
        raise ApiError(404, "not_found", f"work order {work_order_id} does not exist")
    return {"items": items}


@router.post("/{work_order_id}/stop", status_code=202)
async def stop(work_order_id: str, client: ClientDep) -> dict:
    """Operator stop (the `manual` strategy's end, or an early stop): finish after the current iteration."""
    handle = await _running_handle(client, work_order_id)
    await handle.signal("stop")
    return {"id": work_order_id, "status": "stopping"}


@router.delete("/{work_order_id}", status_code=202)
async def cancel(work_order_id: str, client: ClientDep, settings: SettingsDep) -> dict:
    """Cancel a queued or running order: the agent is stopped, the work so far is kept and delivered."""
    handle = await _running_handle(client, work_order_id)
    await handle.cancel()
    # A queued order leaves the queue now, even before its run handles the cancel (a held slot stays
    # until the run has stopped its agent and releases it).
    try:
        await queue.withdraw(client, settings, work_order_id, "canceled")
    except RPCError:
        pass
    return {"id": work_order_id, "status": "canceling"}
