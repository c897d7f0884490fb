"""Purge work orders: their Temporal executions (with history), artifact folders, workspaces and
checkpoint repositories (`<artifact root>/_checkpoints/<id>.git`).

Used by `POST /api/v1/work-orders/purge` and so by `agentgate purge`. Safety rules:
- `dry_run` is the default: a bulk delete that cannot be undone must be asked for twice
  (once to see the list, once with `dry_run=false`);
- an order whose latest run is still open (queued or running) is never purged unless
  `force`: then it is terminated first (the worker stops the agent's process tree when its
  next heartbeat fails), and its folders are swept once more a little later, because the
  worker may still write the last records of the canceled attempt;
- only ids of the work-order form are ever turned into paths.

Selection: `ids` and/or `statuses` and/or `older_than_days` (all given ones must match). The
status and the age are those of the order's latest run; "older than N days" means the latest
run started more than N days ago. Every run of a selected order is deleted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from agentgate import service
from agentgate.checkpoints import repository as checkpoint_repository
from agentgate.config import Settings
from agentgate.models import WORK_ORDER_ID_PATTERN

log = logging.getLogger("agentgate.purge")

KNOWN_STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
StatusName = Literal["queued", "running", "succeeded", "failed", "canceled"]
WorkOrderId = Annotated[str, StringConstraints(pattern=WORK_ORDER_ID_PATTERN)]
_ID = re.compile(WORK_ORDER_ID_PATTERN)
CONCURRENCY = 8


class PurgeRequest(BaseModel):
    """What to purge. At least one selector (`ids`, `statuses`, `older_than_days`); all given ones must match."""

    model_config = ConfigDict(extra="forbid")

    ids: list[WorkOrderId] | None = Field(default=None, max_length=1000, description="Work-order ids.")
    statuses: list[StatusName] | None = Field(
        default=None, max_length=5, description="Status of the order's latest run: " + ", ".join(KNOWN_STATUSES)
    )
    older_than_days: float | None = Field(
        default=None, ge=0, le=36500, description="The order's latest run started more than this many days ago."
    )
    dry_run: bool = Field(default=True, description="Default true: report what would be purged, delete nothing.")
    force: bool = Field(default=False, description="Also purge queued/running orders (terminated first).")
    limit: int = Field(default=500, ge=1, le=5000, description="At most this many orders per request.")

    @model_validator(mode="after")
    def _one_selector(self) -> PurgeRequest:
        if not self.ids and not self.statuses and self.older_than_days is None:
            raise ValueError("give at least one selector: ids, statuses or older_than_days")
        return self


class PurgeItem(BaseModel):
    id: str
    status: str | None = None
    action: Literal["purged", "would_purge", "skipped", "not_found", "error"]
    reason: str | None = None
    runs: list[str] = Field(default_factory=list)
    executions_deleted: int = 0
    terminated: bool = False
    artifacts: str | None = Field(default=None, description="The artifact folder removed (or that would be).")
    workspaces: str | None = Field(default=None, description="The workspace folder removed (or that would be).")
    checkpoints: str | None = Field(default=None, description="The checkpoint repository removed (or that would be).")
    errors: list[str] = Field(default_factory=list)


class PurgeReport(BaseModel):
    dry_run: bool
    force: bool
    matched: int
    purged: int
    skipped: int
    errors: int
    truncated: bool = Field(default=False, description="More orders matched than `limit`; purge again for the rest.")
    items: list[PurgeItem]
    # Folders of force-purged orders to sweep again after the worker has stopped writing (not serialized).
    remnants: list[str] = Field(default_factory=list, exclude=True)


def _utc(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _selection_query(req: PurgeRequest, cutoff: datetime | None, task_queue: str) -> str:
    # Only this deployment's orders (its task queue) are selected by status or age; ids are explicit.
    query = f'WorkflowType="{service.WORKFLOW_TYPE}" AND TaskQueue={service._visibility_literal(task_queue)}'
    if req.statuses:
        filters = [service._STATUS_FILTERS.get(s, f'AgentGateStatus="{s}"') for s in req.statuses]
        query += " AND (" + " OR ".join(f"({f})" for f in filters) + ")"
    if cutoff is not None:
        query += f' AND StartTime < "{_utc(cutoff)}"'
    return query


async def _select_ids(
    client: Client, req: PurgeRequest, cutoff: datetime | None, task_queue: str
) -> tuple[list[str], bool]:
    if req.ids:
        ordered = list(dict.fromkeys(req.ids))
        return ordered[: req.limit], len(ordered) > req.limit
    seen: dict[str, None] = {}
    async for wf in client.list_workflows(_selection_query(req, cutoff, task_queue)):
        if _ID.match(wf.id):
            seen.setdefault(wf.id, None)
        if len(seen) > req.limit:
            break
    ids = list(seen)
    return ids[: req.limit], len(ids) > req.limit


async def _runs(client: Client, work_order_id: str) -> list[str]:
    runs: dict[str, None] = {}
    async for wf in client.list_workflows(f'WorkflowId="{work_order_id}"'):
        runs.setdefault(wf.run_id, None)
    return list(runs)


async def delete_execution(client: Client, workflow_id: str, run_id: str | None) -> bool:
    """DeleteWorkflowExecution for one run (its history and visibility record); False when already gone."""
    request = DeleteWorkflowExecutionRequest(
        namespace=client.namespace, workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id or "")
    )
    try:
        await client.workflow_service.delete_workflow_execution(request)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


def _force_writable(func, path, _exc_info) -> None:
    """rmtree's error hook: a read-only folder (git objects, an agent's chmod) is made writable and retried."""
    try:
        parent = os.path.dirname(path)
        os.chmod(parent, os.stat(parent).st_mode | stat.S_IWUSR | stat.S_IXUSR)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, os.stat(path).st_mode | stat.S_IWUSR | stat.S_IXUSR)
        func(path)
    except FileNotFoundError:
        pass


def remove_tree(path: Path) -> str | None:
    """Remove a folder; None when done (or already gone), else what went wrong."""
    if not path.exists() and not path.is_symlink():
        return None
    try:
        if path.is_symlink() or path.is_file():
            path.unlink()
        else:
            shutil.rmtree(path, onerror=_force_writable)
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return None


def _existing(path: Path) -> str | None:
    return str(path) if path.exists() else None


async def _purge_one(
    client: Client, settings: Settings, req: PurgeRequest, wo: str, cutoff: datetime | None
) -> PurgeItem:
    item = PurgeItem(id=wo, action="skipped")
    artifacts, workspaces = settings.runs_dir / wo, settings.workspaces_dir / wo
    checkpoints = checkpoint_repository(settings.runs_dir, wo)
    handle = client.get_workflow_handle(wo)
    desc = None
    try:
        desc = await handle.describe()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            item.action, item.reason = "error", f"Temporal: {err.message}"
            return item
    if desc is None:
        # No execution left: only what is on disk can still be purged (an explicit id asks for exactly that).
        item.artifacts, item.workspaces = _existing(artifacts), _existing(workspaces)
        item.checkpoints = _existing(checkpoints)
        if not req.ids or not (item.artifacts or item.workspaces or item.checkpoints):
            item.action, item.reason = "not_found", "no such work order in Temporal or on disk"
            return item
        if req.statuses or req.older_than_days is not None:
            item.reason = "no Temporal execution, so its status and age are unknown; purge it by id alone"
            return item
        item.reason = "no Temporal execution; only files were left"
        return await _delete_files(item, req, [artifacts, workspaces, checkpoints])

    listed = service._listed_status(desc.typed_search_attributes, desc.status)
    item.status = listed["status"]
    item.runs = list(dict.fromkeys([*(await _runs(client, wo)), desc.run_id]))
    item.artifacts, item.workspaces = _existing(artifacts), _existing(workspaces)
    item.checkpoints = _existing(checkpoints)
    if req.statuses and item.status not in req.statuses:
        item.reason = f"its latest run is {item.status}, not one of {', '.join(req.statuses)}"
        return item
    if cutoff is not None and desc.start_time is not None and desc.start_time > cutoff:
        item.reason = f"its latest run started {_utc(desc.start_time)}, after the cutoff {_utc(cutoff)}"
        return item
    running = desc.status == WorkflowExecutionStatus.RUNNING
    if running and not req.force:
        item.reason = f"still open ({item.status}); pass force=true to terminate and purge it"
        return item
    if req.dry_run:
        item.action = "would_purge"
        item.reason = "open: would be terminated first" if running else None
        return item

    if running:
        try:
            await handle.terminate(reason="purged by operator (force)")
            item.terminated = True
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                item.action, item.reason = "error", f"could not terminate: {err.message}"
                return item
    for run_id in item.runs:
        try:
            if await delete_execution(client, wo, run_id):
                item.executions_deleted += 1
        except RPCError as err:
            item.errors.append(f"delete run {run_id}: {err.message}")
    return await _delete_files(item, req, [artifacts, workspaces, checkpoints])


async def _delete_files(item: PurgeItem, req: PurgeRequest, paths: list[Path]) -> PurgeItem:
    if req.dry_run:
        item.action = "would_purge"
        return item
    for path in paths:
        problem = await asyncio.to_thread(remove_tree, path)
        if problem:
            item.errors.append(problem)
    item.action = "error" if item.errors else "purged"
    return item


async def purge(client: Client, settings: Settings, req: PurgeRequest) -> PurgeReport:
    """Select, then purge (or, with `dry_run`, describe) every selected order; one item per order."""
    cutoff = datetime.now(UTC) - timedelta(days=req.older_than_days) if req.older_than_days is not None else None
    ids, truncated = await _select_ids(client, req, cutoff, settings.task_queue)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(wo: str) -> PurgeItem:
        async with gate:
            try:
                return await _purge_one(client, settings, req, wo, cutoff)
            except RPCError as err:
                return PurgeItem(id=wo, action="error", reason=f"Temporal: {err.message}")

    items = list(await asyncio.gather(*(one(wo) for wo in ids)))
    for item in items:
        if item.action in ("purged", "error"):
            log.info("purge %s: %s%s", item.id, item.action, f" ({'; '.join(item.errors)})" if item.errors else "")
    remnants = [p for i in items if i.terminated for p in (i.artifacts, i.workspaces, i.checkpoints) if p]
    return PurgeReport(
        dry_run=req.dry_run,
        force=req.force,
        matched=len(ids),
        purged=sum(i.action in ("purged", "would_purge") for i in items),
        skipped=sum(i.action in ("skipped", "not_found") for i in items),
        errors=sum(i.action == "error" for i in items),
        truncated=truncated,
        items=items,
        remnants=remnants,
    )


async def sweep_remnants(paths: list[str], delay: float) -> None:
    """Remove the folders of force-purged orders again once their worker has had time to stop writing."""
    await asyncio.sleep(delay)
    for path in paths:
        problem = await asyncio.to_thread(remove_tree, Path(path))
        if problem:
            log.warning("purge: could not remove a remnant: %s", problem)


def settle_seconds(settings: Settings) -> float:
    """How long a terminated agent may keep writing: one heartbeat to notice, the SIGTERM grace, a margin."""
    return settings.heartbeat_seconds + settings.agent_grace_seconds + 2.0
