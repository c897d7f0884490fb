"""Activities of the global admission queue: joining it from a work-order run, and finding leaked slots.

Joining is a signal-with-start on the admission workflow, so it works when that workflow
does not exist yet (a fresh stack, a test that starts a work-order workflow directly); the
initial state comes from this worker's settings (`AGENTGATE_CAPACITY`). Finding leaked slots
describes the runs the queue still counts, through the worker's own Temporal client.
"""

from __future__ import annotations

import asyncio

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from activities.deps import ActivityDeps
from agentgate.config import Settings
from agentgate.queue import initial_admission_state
from workflows.admission import (
    AdmissionWorkflow,
    EnqueueRequest,
    RunRef,
    RunRefs,
    admission_workflow_id,
)


async def signal_enqueue(client: Client, settings: Settings, req: EnqueueRequest) -> str:
    """Signal-with-start: join the queue, starting the admission workflow if it is not running."""
    wf_id = admission_workflow_id(settings.task_queue)
    await client.start_workflow(
        AdmissionWorkflow.run,
        initial_admission_state(settings),
        id=wf_id,
        task_queue=settings.task_queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        start_signal="enqueue",
        start_signal_args=[req],
        static_summary="AgentGate admission queue",
    )
    return wf_id


async def closed_runs(client: Client, refs: list[RunRef]) -> list[RunRef]:
    """The runs among `refs` that are no longer running (or no longer exist)."""

    async def closed(ref: RunRef) -> bool:
        try:
            desc = await client.get_workflow_handle(ref.work_order_id, run_id=ref.run_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return True
            raise
        return desc.status != WorkflowExecutionStatus.RUNNING

    found: list[RunRef] = []
    for start in range(0, len(refs), 20):  # a few describes at a time: the queue may hold hundreds
        batch = refs[start : start + 20]
        flags = await asyncio.gather(*(closed(ref) for ref in batch))
        found.extend(ref for ref, flag in zip(batch, flags, strict=True) if flag)
    return found


class AdmissionActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self.deps = deps

    @activity.defn(name="admission_enqueue")
    async def enqueue(self, req: EnqueueRequest) -> str:
        """Join the global queue; returns the admission workflow's id. Idempotent (work order, run, ticket)."""
        return await signal_enqueue(activity.client(), self.deps.settings, req)

    @activity.defn(name="admission_closed_runs")
    async def closed_runs(self, refs: RunRefs) -> RunRefs:
        return RunRefs(runs=await closed_runs(activity.client(), refs.runs))
