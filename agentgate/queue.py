"""The client side of the global queue (workflows/admission.py), used by the API, the worker and the tests.

Submitting enqueues through update-with-start, so the answer carries the real position the
moment the order is started (the work-order workflow's own enqueue is the same request and
is ignored as a duplicate). Everything else reads the admission workflow's queries, or
describes the workflow and the task queues for health; nothing is cached here.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from agentgate.config import Settings
from agentgate.models import WorkOrder
from workflows.admission import (
    AdmissionState,
    AdmissionWorkflow,
    EnqueueRequest,
    LeaveRequest,
    QueueSnapshot,
    QueueStanding,
    QueueStats,
    estimate_wait_seconds,
)

QUERY_TIMEOUT = 5.0
POLLER_FRESH_SECONDS = 90.0  # a live worker's long poll lasts up to a minute; older than this is gone


class QueueUnavailable(Exception):
    """The admission workflow does not exist, is closed, or does not answer (no worker)."""


def initial_admission_state(settings: Settings) -> AdmissionState:
    """The state a new admission workflow starts with; ignored when it already runs."""
    return AdmissionState(capacity=settings.queue_capacity, reconcile_seconds=settings.queue_reconcile_seconds)


def start_operation(settings: Settings) -> WithStartWorkflowOperation:
    return WithStartWorkflowOperation(
        AdmissionWorkflow.run,
        initial_admission_state(settings),
        id=settings.admission_workflow_id,
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        static_summary="AgentGate admission queue",
    )


def _handle(client: Client, settings: Settings) -> WorkflowHandle:
    return client.get_workflow_handle(settings.admission_workflow_id)


async def ensure_admission(client: Client, settings: Settings) -> None:
    """Start the admission workflow unless it runs (the worker does this at start-up)."""
    await client.start_workflow(
        AdmissionWorkflow.run,
        initial_admission_state(settings),
        id=settings.admission_workflow_id,
        task_queue=settings.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        static_summary="AgentGate admission queue",
    )


async def enqueue(
    client: Client, settings: Settings, order: WorkOrder, run_id: str, *, timeout: float | None = None
) -> QueueStanding:
    """Join the queue for the first slot of this run and answer where it stands (update-with-start).

    The update completes only once a worker ran it: with no worker, `timeout` gives up (TimeoutError)."""
    req = EnqueueRequest(
        work_order_id=order.id, run_id=run_id, ticket=1, priority=order.priority, fairness_key=order.fairness_key
    )
    op = start_operation(settings)
    try:
        return await asyncio.wait_for(
            # A stable update id: a retry after a timeout waits on the update already in flight instead of
            # adding another one (Temporal limits the updates in flight per workflow).
            client.execute_update_with_start_workflow(
                AdmissionWorkflow.enqueue, req, start_workflow_operation=op, id=f"enqueue/{order.id}/{run_id}/1"
            ),
            timeout,
        )
    finally:
        # The operation keeps the start's outcome in a future of its own; read it, so a call given up
        # on is not reported later as "Future exception was never retrieved".
        started = getattr(op, "_workflow_handle", None)
        if isinstance(started, asyncio.Future) and started.done() and not started.cancelled():
            started.exception()


async def set_capacity(client: Client, settings: Settings, capacity: int) -> QueueStats:
    """Change the capacity now; more free slots admit the next orders at once. Works before the first order too."""
    return await client.execute_update_with_start_workflow(
        AdmissionWorkflow.set_capacity, capacity, start_workflow_operation=start_operation(settings)
    )


async def release(client: Client, settings: Settings, work_order_id: str, run_id: str | None, reason: str) -> bool:
    """Free the slot (or waiting place) of a run at once, e.g. after a kill. False when there is no queue."""
    try:
        await _handle(client, settings).signal(
            AdmissionWorkflow.release, LeaveRequest(work_order_id=work_order_id, run_id=run_id, reason=reason)
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def withdraw(client: Client, settings: Settings, work_order_id: str, reason: str) -> bool:
    """Take the order out of the waiting line at once (a cancel); a slot it already holds stays until its
    run has stopped the agent and releases it. False when there is no queue."""
    try:
        await _handle(client, settings).signal(
            AdmissionWorkflow.withdraw,
            LeaveRequest(work_order_id=work_order_id, waiting_only=True, reason=reason),
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def _query(client: Client, settings: Settings, query: Any, *args: Any) -> Any:
    try:
        return await asyncio.wait_for(_handle(client, settings).query(query, *args), timeout=QUERY_TIMEOUT)
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise QueueUnavailable(f"the admission workflow {settings.admission_workflow_id} is not running") from err
        raise QueueUnavailable(f"the admission workflow did not answer: {err.message}") from err
    except TimeoutError as err:
        raise QueueUnavailable(
            f"the admission workflow did not answer within {QUERY_TIMEOUT:g} s (is a worker polling "
            f"{settings.task_queue}?)"
        ) from err


async def standing(client: Client, settings: Settings, work_order_id: str) -> QueueStanding:
    return await _query(client, settings, AdmissionWorkflow.position, work_order_id)


async def stats(client: Client, settings: Settings) -> QueueStats:
    return await _query(client, settings, AdmissionWorkflow.stats)


async def snapshot(client: Client, settings: Settings) -> QueueSnapshot:
    return await _query(client, settings, AdmissionWorkflow.snapshot)


def _seconds_since(when: datetime | None, now: datetime) -> float | None:
    return None if when is None else round(max(0.0, (now - when).total_seconds()), 3)


def position_view(s: QueueStanding, now: datetime | None = None) -> dict[str, Any]:
    """What the API answers for one order: position 1 = next to get a slot, 0 = holds one, None = not in the queue."""
    now = now or datetime.now(UTC)
    return {
        "id": s.work_order_id,
        "run_id": s.run_id,
        "queue_state": s.state,
        "position": s.position,
        "ahead": s.ahead,
        "priority": s.priority,
        "fairness_key": s.fairness_key,
        "capacity": s.capacity,
        "waited_seconds": _seconds_since(s.enqueued_at, now) if s.state == "waiting" else None,
        "estimated_wait_seconds": estimate_wait_seconds(
            s.position, s.capacity, s.holders_admitted_at, s.average_hold_seconds, now
        ),
    }


def stats_view(st: QueueStats, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    by_priority = {str(p): 0 for p in range(1, 6)} | st.by_priority
    return {
        "queued": st.queued,
        "running": st.running,
        "capacity": st.capacity,
        "free_slots": max(0, st.capacity - st.running),
        "by_priority": by_priority,
        "oldest_wait_seconds": _seconds_since(st.oldest_enqueued_at, now),
        "average_hold_seconds": st.average_hold_seconds,
        "admitted_total": st.grants,
        "released_total": st.released,
        "reconciled_total": st.reconciled,
    }


def estimated_waits(
    count: int,
    capacity: int,
    holders_admitted_at: Sequence[datetime],
    average_hold_seconds: float | None,
    now: datetime,
) -> list[float | None]:
    """`estimate_wait_seconds` for positions 1..count in one pass (that one re-simulates from the start for
    each position, quadratic over a long queue); entry k equals `estimate_wait_seconds(k + 1, ...)`."""
    if average_hold_seconds is None:
        return [None] * count
    busy = [max(0.0, average_hold_seconds - (now - t).total_seconds()) for t in holders_admitted_at]
    heapq.heapify(busy)
    clock = 0.0
    waits: list[float | None] = []
    for _ in range(count):
        while len(busy) >= max(1, capacity):
            clock = max(clock, heapq.heappop(busy))
        heapq.heappush(busy, clock + average_hold_seconds)
        waits.append(round(clock, 1))
    return waits


def snapshot_view(snap: QueueSnapshot, now: datetime | None = None) -> dict[str, Any]:
    """The whole queue at one instant, for a page that shows every order's place (the dashboard).

    The snapshot query orders the waiting entries with the same `admission_order` the `position`
    query uses, so `positions[k]` is position k + 1, exactly what `GET /work-orders/{id}/position`
    answers for that order, without one query per order. Counts come from the same snapshot, so
    `queued == len(positions)` always holds."""
    now = now or datetime.now(UTC)
    by_priority = {str(p): 0 for p in range(1, 6)}
    for entry in snap.waiting:
        by_priority[str(entry.priority)] = by_priority.get(str(entry.priority), 0) + 1
    enqueued = [e.enqueued_at for e in snap.waiting if e.enqueued_at is not None]
    holders_at = [h.admitted_at for h in snap.holders]
    waits = estimated_waits(len(snap.waiting), snap.capacity, holders_at, snap.average_hold_seconds, now)
    positions = [
        {
            "work_order_id": e.work_order_id,
            "run_id": e.run_id,
            "position": index + 1,
            "ahead": index,
            "priority": e.priority,
            "fairness_key": e.fairness_key,
            "waited_seconds": _seconds_since(e.enqueued_at, now),
            "estimated_wait_seconds": waits[index],
        }
        for index, e in enumerate(snap.waiting)
    ]
    holders = [
        {
            "work_order_id": h.entry.work_order_id,
            "run_id": h.entry.run_id,
            "position": 0,
            "priority": h.entry.priority,
            "fairness_key": h.entry.fairness_key,
            "admitted_at": h.admitted_at.isoformat(),
            "held_seconds": _seconds_since(h.admitted_at, now),
        }
        for h in sorted(snap.holders, key=lambda h: h.grant)
    ]
    return {
        "queued": len(snap.waiting),
        "running": len(snap.holders),
        "capacity": snap.capacity,
        "free_slots": max(0, snap.capacity - len(snap.holders)),
        "by_priority": by_priority,
        "oldest_wait_seconds": _seconds_since(min(enqueued, default=None), now),
        "average_hold_seconds": snap.average_hold_seconds,
        "admitted_total": snap.grants,
        "positions": positions,
        "holders": holders,
    }


async def pollers(client: Client, settings: Settings, task_queue: str, kind: str = "workflow") -> list[dict[str, Any]]:
    """Workers that polled `task_queue` recently (describe_task_queue); `kind` is workflow or activity."""
    qtype = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW if kind == "workflow" else TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
    resp = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=settings.temporal_namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=qtype
        )
    )
    now = datetime.now(UTC)
    found = []
    for poller in resp.pollers:
        seen = poller.last_access_time.ToDatetime(tzinfo=UTC) if poller.HasField("last_access_time") else None
        age = (now - seen).total_seconds() if seen else None
        if age is None or age <= POLLER_FRESH_SECONDS:
            found.append({"identity": poller.identity, "last_access_seconds_ago": round(age, 1) if age else None})
    return found


async def admission_status(client: Client, settings: Settings) -> str:
    """running, not_started, or the closed execution's status (terminated, completed, ...)."""
    try:
        desc = await _handle(client, settings).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return "not_started"
        raise
    return "running" if desc.status == WorkflowExecutionStatus.RUNNING else (desc.status.name.lower())


async def health(client: Client, settings: Settings) -> dict[str, Any]:
    """healthy / degraded / unhealthy, with the reasons an operator can act on."""
    unhealthy: list[str] = []
    degraded: list[str] = []
    checks: dict[str, Any] = {}
    try:
        found = await pollers(client, settings, settings.task_queue, "workflow")
        found_act = await pollers(client, settings, settings.task_queue, "activity")
        checks["workers"] = {"ok": bool(found and found_act), "task_queue": settings.task_queue,
                             "workflow_pollers": len(found), "activity_pollers": len(found_act)}  # fmt: skip
        if not (found and found_act):
            unhealthy.append(f"no worker is polling the task queue {settings.task_queue!r} (start `agentgate worker`)")
    except RPCError as err:
        checks["workers"] = {"ok": False, "error": err.message}
        unhealthy.append(f"cannot describe the task queue {settings.task_queue!r}: {err.message}")
    state = await admission_status(client, settings)
    checks["admission_workflow"] = {"ok": state == "running", "id": settings.admission_workflow_id, "status": state}
    summary: dict[str, Any] | None = None
    if state != "running":
        unhealthy.append(
            f"the admission workflow {settings.admission_workflow_id} is {state.replace('_', ' ')} "
            "(a worker starts it at start-up, and so does the next submitted order)"
        )
    else:
        try:
            summary = stats_view(await stats(client, settings))
        except QueueUnavailable as exc:
            unhealthy.append(str(exc))
    if summary is not None:
        oldest = summary["oldest_wait_seconds"]
        if oldest is not None and oldest > settings.queue_wait_warn_seconds:
            degraded.append(
                f"the oldest queued order has waited {oldest:.0f} s, over {settings.queue_wait_warn_seconds:g} s "
                "(raise the capacity or add workers)"
            )
    status = "unhealthy" if unhealthy else "degraded" if degraded else "healthy"
    return {"status": status, "reasons": unhealthy + degraded, "checks": checks, "stats": summary}
