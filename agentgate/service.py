"""Operations on work orders against Temporal, shared by the HTTP API and the tests.

The API routes stay thin: they validate, call one function here, and shape the answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    Priority,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from agentgate import queue, queue_join
from agentgate import search_attributes as sa
from agentgate.artifacts import ArtifactStore
from agentgate.config import Settings
from agentgate.ids import new_work_order_id
from agentgate.models import RunContext, RunOutcome, RunStatus, WorkOrder, WorkOrderRequest
from workflows.admission import QueueStanding
from workflows.work_order import WorkOrderWorkflow

WORKFLOW_TYPE = "WorkOrderWorkflow"
log = logging.getLogger("agentgate.service")


class WorkOrderNotFound(LookupError):
    pass


class WorkOrderConflict(Exception):
    pass


def idempotent_id(key: str) -> str:
    """A stable work-order id for an Idempotency-Key: the same key always names the same order."""
    digest = hashlib.sha256(key.encode()).digest()
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    value = int.from_bytes(digest[:20], "big")
    chars = []
    for _ in range(30):
        chars.append(alphabet[value & 31])
        value >>= 5
    return "wo_k" + "".join(chars)


def make_work_order(
    request: WorkOrderRequest, idempotency_key: str | None = None, *, profile_hash: str | None = None
) -> WorkOrder:
    """The order as it enters Temporal; `request` already has its profile applied (api/routes/profiles.py)."""
    wo_id = idempotent_id(idempotency_key) if idempotency_key else new_work_order_id()
    return WorkOrder(**request.model_dump(), id=wo_id, created_at=datetime.now(UTC), profile_hash=profile_hash)


def initial_search_attributes(order: WorkOrder) -> TypedSearchAttributes:
    pairs = [
        SearchAttributePair(sa.STATUS, RunStatus.QUEUED.value),
        SearchAttributePair(sa.STATE, "queued"),
        SearchAttributePair(sa.PRIORITY, order.priority),
        SearchAttributePair(sa.AGENT, order.agent.driver),
        SearchAttributePair(sa.REPO, order.repo_label()[:200]),
    ]
    if order.labels:
        pairs.append(SearchAttributePair(sa.LABELS, order.labels))
    return TypedSearchAttributes(pairs)


async def start_work_order(
    client: Client, settings: Settings, order: WorkOrder, *, rerun: bool = False
) -> tuple[WorkflowHandle, bool]:
    """Start the run; returns (handle, created). An existing order with the same id is returned, not duplicated."""
    try:
        handle = await client.start_workflow(
            WorkOrderWorkflow.run,
            order,
            id=order.id,
            task_queue=settings.task_queue,
            search_attributes=initial_search_attributes(order),
            priority=Priority(priority_key=order.priority),
            static_summary=order.task_prompt[:200],
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE if rerun else WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
        return handle, True
    except WorkflowAlreadyStartedError:
        if rerun:
            raise WorkOrderConflict(f"work order {order.id} is still running; cancel it or wait") from None
        return client.get_workflow_handle(order.id), False


async def join_queue(
    client: Client, settings: Settings, order: WorkOrder, handle: WorkflowHandle, created: bool
) -> QueueStanding | None:
    """Right after the start: enqueue the run in the global queue and answer its standing (position).

    The run's own enqueue (its first activity) is the same idempotent request, so this one only
    makes the position known at once. A burst of submissions can exceed Temporal's limit of
    updates in flight per workflow: agentgate/queue_join.py retries and falls back to reading the
    standing, so the position is None only when no worker answers in time; the run still queues itself.
    """
    try:
        if not created:
            return await queue.standing(client, settings, order.id)
        run_id = handle.result_run_id or (await handle.describe()).run_id
        return await queue_join.enqueue_or_standing(client, settings, order, run_id)
    except (
        TimeoutError,
        RPCError,
        WorkflowUpdateFailedError,
        WorkflowUpdateRPCTimeoutOrCancelledError,  # what wait_for's cancel turns into when no worker answers
        queue.QueueUnavailable,
    ) as exc:
        log.warning("work order %s: position not known yet: %s", order.id, exc)
        return None


async def original_work_order(client: Client, work_order_id: str) -> WorkOrder:
    """The work order as first submitted, decoded from the start event of its latest run's history."""
    handle = client.get_workflow_handle(work_order_id)
    try:
        history = await handle.fetch_history()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise WorkOrderNotFound(work_order_id) from err
        raise
    attrs = history.events[0].workflow_execution_started_event_attributes
    [order] = await client.data_converter.decode(attrs.input.payloads, [WorkOrder])
    return order


async def rerun_work_order(client: Client, settings: Settings, work_order_id: str) -> WorkflowHandle:
    order = await original_work_order(client, work_order_id)
    order = order.model_copy(update={"created_at": datetime.now(UTC)})
    handle, _ = await start_work_order(client, settings, order, rerun=True)
    return handle


async def list_runs(client: Client, work_order_id: str) -> list[dict]:
    runs = []
    async for wf in client.list_workflows(f'WorkflowId="{work_order_id}"'):
        attrs = wf.typed_search_attributes
        runs.append(
            {
                "run_id": wf.run_id,
                "execution_status": wf.status.name.lower() if wf.status else None,
                "status": attrs.get(sa.STATUS),
                "result": attrs.get(sa.RESULT),
                "started_at": wf.start_time.isoformat() if wf.start_time else None,
                "closed_at": wf.close_time.isoformat() if wf.close_time else None,
            }
        )
    runs.sort(key=lambda r: r["started_at"] or "")
    return runs


def _status_from_execution(status: WorkflowExecutionStatus | None) -> RunStatus | None:
    if status in (WorkflowExecutionStatus.CANCELED,):
        return RunStatus.CANCELED
    if status in (
        WorkflowExecutionStatus.TERMINATED,
        WorkflowExecutionStatus.TIMED_OUT,
        WorkflowExecutionStatus.FAILED,
    ):
        return RunStatus.FAILED
    return None


async def get_outcome(client: Client, settings: Settings, work_order_id: str) -> RunOutcome:
    """The run's current picture: from the workflow's `status` query, or from run.json when that fails."""
    handle = client.get_workflow_handle(work_order_id)
    try:
        desc = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise WorkOrderNotFound(work_order_id) from err
        raise
    outcome: RunOutcome | None = None
    try:
        outcome = await asyncio.wait_for(handle.query(WorkOrderWorkflow.status), timeout=5)
    except Exception:  # no worker to answer, or a run that ended before it started
        outcome = _outcome_from_artifacts(settings, work_order_id, desc.run_id)
    if outcome is None:
        outcome = RunOutcome(work_order_id=work_order_id, run_id=desc.run_id, status=RunStatus.QUEUED, state="queued")
    forced = _status_from_execution(desc.status)
    if forced is not None and outcome.status not in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED):
        outcome.status = forced
        outcome.state = forced.value
        if desc.status == WorkflowExecutionStatus.TERMINATED:
            outcome.result = "failed_error"
            outcome.error = outcome.error or "the workflow was terminated"
    return outcome


def _outcome_from_artifacts(settings: Settings, work_order_id: str, run_id: str) -> RunOutcome | None:
    store = ArtifactStore(settings.runs_dir)
    ctx = RunContext(work_order_id=work_order_id, run_id=run_id)
    try:
        return RunOutcome.model_validate(json.loads(store.read_text(ctx, "run.json")))
    except (OSError, ValueError):
        return None


def _visibility_literal(value: str) -> str:
    """Quote a filter value for a visibility query; quotes and backslashes could rewrite the query, so refuse them."""
    if '"' in value or "\\" in value or "'" in value:
        raise ValueError(f"filter value {value!r} must not contain quotes or backslashes")
    return f'"{value}"'


# A terminated or timed-out execution never wrote its final status attribute, so a kill would
# leave it listed as running forever: Temporal's own execution status decides for those.
_STATUS_FILTERS = {
    "queued": 'AgentGateStatus="queued" AND ExecutionStatus="Running"',
    "running": 'AgentGateStatus="running" AND ExecutionStatus="Running"',
    "failed": '(AgentGateStatus="failed" OR ExecutionStatus="Terminated" OR ExecutionStatus="TimedOut"'
    ' OR ExecutionStatus="Failed")',
    "canceled": '(AgentGateStatus="canceled" OR ExecutionStatus="Canceled")',
}


def _listed_status(attrs: TypedSearchAttributes, execution: WorkflowExecutionStatus | None) -> dict:
    status, state, result = attrs.get(sa.STATUS), attrs.get(sa.STATE), attrs.get(sa.RESULT)
    forced = _status_from_execution(execution)
    if forced is not None and status not in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED):
        status = state = forced.value
        if execution == WorkflowExecutionStatus.TERMINATED:
            result = result or "failed_error"
    return {"status": status, "state": state, "result": result}


def _visibility_time(value: datetime) -> str:
    """RFC 3339 in UTC for a StartTime bound; a naive datetime is taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def work_order_query(
    *,
    status: str | None = None,
    agent: str | None = None,
    repository: str | None = None,
    label: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> str:
    """The visibility query for a filtered listing (raises ValueError/OverflowError on unusable values)."""
    query = f'WorkflowType="{WORKFLOW_TYPE}"'
    if status:
        query += f" AND {_STATUS_FILTERS.get(status, f'AgentGateStatus={_visibility_literal(status)}')}"
    for key, value in ((sa.AGENT, agent), (sa.REPO, repository), (sa.LABELS, label)):
        if value:
            query += f" AND {key.name}={_visibility_literal(value)}"
    if created_after is not None:
        query += f' AND StartTime >= "{_visibility_time(created_after)}"'
    if created_before is not None:
        query += f' AND StartTime < "{_visibility_time(created_before)}"'
    return query


def _listed_row(wf) -> dict:
    attrs = wf.typed_search_attributes
    return {
        "id": wf.id,
        "run_id": wf.run_id,
        **_listed_status(attrs, wf.status),
        "agent": attrs.get(sa.AGENT),
        "repository": attrs.get(sa.REPO),
        "priority": attrs.get(sa.PRIORITY),
        "labels": list(attrs.get(sa.LABELS) or []),
        "created_at": wf.start_time.isoformat() if wf.start_time else None,
        "closed_at": wf.close_time.isoformat() if wf.close_time else None,
    }


async def list_work_orders_page(
    client: Client, query: str, *, limit: int = 50, page_token: bytes | None = None
) -> tuple[list[dict], bytes | None]:
    """One page in Temporal visibility's order, and the token of the next page (None at the end).

    Visibility's order is the only one a SQL store can give (it refuses ORDER BY): open runs
    first, newest start first, then closed runs, most recently closed first.
    """
    pages = client.list_workflows(query, page_size=limit, next_page_token=page_token)
    rows: list[dict] = []
    while True:
        await pages.fetch_next_page(page_size=limit - len(rows))
        rows.extend(_listed_row(wf) for wf in pages.current_page or ())
        if pages.next_page_token is None or len(rows) >= limit:
            return rows, pages.next_page_token


async def list_work_orders(
    client: Client,
    *,
    status: str | None = None,
    limit: int = 50,
    agent: str | None = None,
    repository: str | None = None,
    label: str | None = None,
) -> list[dict]:
    query = work_order_query(status=status, agent=agent, repository=repository, label=label)
    rows, _ = await list_work_orders_page(client, query, limit=limit)
    return rows


def artifacts_dir(settings: Settings, outcome: RunOutcome) -> Path:
    return settings.runs_dir / outcome.work_order_id / outcome.run_id


class RewindError(ValueError):
    """A rewind that cannot start as asked; `field` names the request field to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


async def rewind_work_order(
    client: Client,
    settings: Settings,
    work_order_id: str,
    to_iteration: int,
    *,
    agent: str | dict | None = None,
    run_id: str | None = None,
) -> tuple[WorkflowHandle, WorkOrder]:
    """Start a new run of a finished work order from checkpoint `to_iteration` of one of its runs (default: the latest).

    The new run's iteration 1 builds on that checkpoint's commit; earlier runs stay in
    history. `agent` replaces the agent: a driver name (the original spec is kept when the
    driver is the same) or a whole agent spec.
    """
    from agentgate import checkpoints
    from agentgate.models import AgentSpec, CheckpointPointer

    try:
        latest = await client.get_workflow_handle(work_order_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise WorkOrderNotFound(work_order_id) from err
        raise
    if latest.status == WorkflowExecutionStatus.RUNNING:
        raise WorkOrderConflict(f"work order {work_order_id} is still running; cancel it or wait, then rewind")
    handle = client.get_workflow_handle(work_order_id, run_id=run_id)
    try:
        desc = await handle.describe() if run_id is not None else latest
        history = await handle.fetch_history()
    except RPCError as err:
        if run_id is not None and err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise RewindError("run_id", f"work order {work_order_id} has no run {run_id}") from err
        raise
    attrs = history.events[0].workflow_execution_started_event_attributes
    [order] = await client.data_converter.decode(attrs.input.payloads, [WorkOrder])
    found = await checkpoints.list_iterations(settings.runs_dir, work_order_id, desc.run_id)
    if not found:
        raise RewindError(
            "to_iteration",
            f"run {desc.run_id} of {work_order_id} has no checkpoints (it ended before its first snapshot, "
            "or ran before checkpoints existed); `agentgate rerun` starts it over instead",
        )
    if to_iteration not in found:
        raise RewindError(
            "to_iteration",
            f"run {desc.run_id} of {work_order_id} has checkpoints for iteration(s) "
            f"{', '.join(map(str, found))}; {to_iteration} is not one of them",
        )
    if isinstance(agent, str):
        if agent == order.agent.driver:
            agent = None
        elif agent == "command":
            raise RewindError("agent", 'the command driver needs a command: pass {"driver": "command", "command": …}')
        else:
            agent = {"driver": agent}
    pointer = CheckpointPointer(
        run_id=desc.run_id,
        iteration=to_iteration,
        ref=checkpoints.iteration_ref(desc.run_id, to_iteration),
        commit=found[to_iteration],
    )
    update: dict = {"created_at": datetime.now(UTC), "resume_from": pointer}
    if agent is not None:
        try:
            update["agent"] = AgentSpec.model_validate(agent)
        except ValueError as exc:  # pydantic's ValidationError: name the first problem
            first = exc.errors()[0] if hasattr(exc, "errors") else {"msg": str(exc)}
            raise RewindError("agent", str(first["msg"]).removeprefix("Value error, ")) from exc
    new_order = order.model_copy(update=update)
    new_handle, _ = await start_work_order(client, settings, new_order, rerun=True)
    return new_handle, new_order
