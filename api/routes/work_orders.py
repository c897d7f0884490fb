"""Work-order routes: submit, read, list, cancel."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Query, Response
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from agentgate import service
from agentgate.models import LocalSource, RunOutcome, WorkOrderRequest
from api.deps import ClientDep, SettingsDep
from api.errors import ApiError, field_error

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
    data["links"] = {
        "temporal_ui": settings.workflow_ui_url(outcome.work_order_id, outcome.run_id),
        "artifacts": str(service.artifacts_dir(settings, outcome)),
    }
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
    order = service.make_work_order(body, idempotency_key)
    _, created = await service.start_work_order(client, settings, order)
    response.headers["Location"] = f"/api/v1/work-orders/{order.id}"
    status = "queued"
    if not created:
        response.status_code = 200
        status = (await service.get_outcome(client, settings, order.id)).status.value
    return {
        "id": order.id,
        "status": status,
        "created": created,
        "position": None,
        "links": {"self": f"/api/v1/work-orders/{order.id}", "temporal_ui": settings.workflow_ui_url(order.id)},
    }


@router.get("")
async def list_orders(
    client: ClientDep,
    status: Annotated[str | None, Query(pattern="^(queued|running|succeeded|failed|canceled)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    agent: Annotated[str | None, Query(max_length=64, pattern=_FILTER_VALUE)] = None,
    repository: Annotated[str | None, Query(max_length=200, pattern=_FILTER_VALUE)] = None,
    label: Annotated[str | None, Query(max_length=64, pattern=_FILTER_VALUE)] = None,
) -> dict:
    items = await service.list_work_orders(
        client, status=status, limit=limit, agent=agent, repository=repository, label=label
    )
    return {"items": items}


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
    reason: Annotated[str, Body(embed=True, min_length=1, max_length=2000)] = "killed by operator",
) -> dict:
    """Force: terminate the workflow now. The agent activity's next heartbeat fails, which stops its process tree."""
    handle = await _running_handle(client, work_order_id)
    await handle.terminate(reason=reason)
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
async def cancel(work_order_id: str, client: ClientDep) -> dict:
    """Cancel a queued or running order: the agent is stopped, the work so far is kept and delivered."""
    handle = await _running_handle(client, work_order_id)
    await handle.cancel()
    return {"id": work_order_id, "status": "canceling"}
