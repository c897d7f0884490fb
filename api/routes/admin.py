"""Operator routes: purge work orders (Temporal executions, artifact folders, workspaces).

`POST /api/v1/work-orders/purge` lives here rather than in the work-orders router because
it acts on many orders at once; it is registered before that router, and only POST exists
at this path, so it never shadows `GET/DELETE /work-orders/{id}` (an id never is `purge`:
ids are `wo_…`).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from temporalio.service import RPCError

from agentgate import purge as purging
from api.deps import ClientDep, SettingsDep
from api.errors import ApiError

router = APIRouter(prefix="/api/v1", tags=["admin"])
# Detached sweeps (not BackgroundTasks, which would hold a keep-alive connection for the whole delay).
_sweeps: set[asyncio.Task] = set()


@router.post("/work-orders/purge", response_model=purging.PurgeReport)
async def purge(body: purging.PurgeRequest, client: ClientDep, settings: SettingsDep) -> purging.PurgeReport:
    """Delete work orders for good: every run's Temporal execution (and history), the artifact folder, the workspaces.

    `dry_run` defaults to **true**: the answer lists what would be purged and nothing is deleted; send
    `dry_run: false` to do it. Orders still queued or running are skipped unless `force` (then terminated
    first). Workspaces are removed on this host only (`AGENTGATE_HOME/workspaces`); on a multi-host
    deployment run `agentgate doctor --fix` on each worker host to remove theirs.
    """
    try:
        report = await purging.purge(client, settings, body)
    except RPCError as exc:  # selection failed (Temporal went away mid-request): nothing was deleted
        raise ApiError(503, "temporal_unavailable", f"Temporal did not answer the selection query: {exc}") from exc
    if report.remnants:
        task = asyncio.create_task(purging.sweep_remnants(report.remnants, purging.settle_seconds(settings)))
        _sweeps.add(task)
        task.add_done_callback(_sweeps.discard)
    return report
