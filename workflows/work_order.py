"""The durable run of one work order: prepare → (build → snapshot → verify → feedback)* → deliver.

Deterministic code only: every side effect is an activity, time is `workflow.now()`,
limits are Temporal timers. Each state change goes through the run state machine and
is mirrored into search attributes so the Temporal Web UI and list queries see it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.build import BuildActivities
    from activities.errors import NON_RETRYABLE
    from activities.records import RecordActivities
    from activities.verify import VerifyActivities
    from activities.workspace import WorkspaceActivities
    from agentgate import search_attributes as sa
    from agentgate.models import (
        AgentSummary,
        BuildError,
        BuildInput,
        DeliverInput,
        DeliveryResult,
        ErrorType,
        FeedbackInput,
        FinalizeInput,
        IterationRecord,
        PhaseTiming,
        PrepareInput,
        RecordIterationInput,
        RunContext,
        RunOutcome,
        RunStatus,
        SnapshotInput,
        TokenUsage,
        VerifyInput,
        WorkOrder,
        WorkspaceInfo,
    )
    from agentgate.state_machine import RunEvent, RunResult, RunState, RunStateMachine

SHORT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
    non_retryable_error_types=NON_RETRYABLE,
)
AGENT_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=3,
    non_retryable_error_types=NON_RETRYABLE,
)
CANCEL_WAIT = workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED


def _reraise_cancellation(err: ActivityError) -> None:
    """An activity that ended because we canceled it is not a phase failure."""
    if isinstance(err.cause, CancelledError) or is_cancelled_exception(err):
        raise asyncio.CancelledError() from err


class _RunEnded(Exception):
    """Internal: the iteration loop stopped on a classified error (already applied to the state machine)."""


@workflow.defn(name="WorkOrderWorkflow")
class WorkOrderWorkflow:
    def __init__(self) -> None:
        self.sm = RunStateMachine()
        self.order: WorkOrder | None = None
        self.ctx: RunContext | None = None
        self.workspace: WorkspaceInfo | None = None
        self.history: list[IterationRecord] = []
        self.last_commit: str | None = None
        self.error: BuildError | None = None
        self.delivery: DeliveryResult | None = None
        self.partial = False
        self.started_at = None
        self.ended_at = None
        self.session_id: str | None = None
        self.finished = False  # delivery and records done: only then is the coarse status terminal
        self.admitted = False  # an agent slot was granted: "queued" becomes "running"

    # -- queries ---------------------------------------------------------------------
    @workflow.query(name="status")
    def status(self) -> RunOutcome:
        return self._outcome()

    @workflow.signal(name="agent_started")
    def agent_started(self, iteration: int) -> None:
        """Sent by the build activity as its first act: the run holds an agent slot now."""
        if not self.admitted:
            self.admitted = True
            if not self.sm.terminal:
                self._publish_state()

    # -- main ------------------------------------------------------------------------
    @workflow.run
    async def run(self, order: WorkOrder) -> RunOutcome:
        self.order = order
        info = workflow.info()
        self.ctx = RunContext(work_order_id=info.workflow_id, run_id=info.run_id)
        self.started_at = workflow.now()
        await self._act(RecordActivities.record_run_started, self._outcome(), timeout=30)

        loop = asyncio.ensure_future(self._iterate())
        canceled = False
        try:
            await workflow.wait_condition(lambda: loop.done(), timeout=timedelta(seconds=order.max_wall_clock_seconds))
        except TimeoutError:
            await self._stop_loop(loop)
            self._end(
                RunEvent.TIMEOUT,
                BuildError(
                    type=ErrorType.AGENT_TIMEOUT if self.sm.state == RunState.BUILDING else ErrorType.SYSTEM_ERROR,
                    message=f"the run exceeded its wall-clock limit of {order.max_wall_clock_seconds:g} s",
                    phase=self._phase_name(),
                ),
            )
        except asyncio.CancelledError:
            canceled = True
            await self._stop_loop(loop)
            self._end(
                RunEvent.USER_CANCELED,
                BuildError(type=ErrorType.CANCELED, message="the run was canceled", phase=self._phase_name()),
            )
        else:
            exc = loop.exception()
            if exc is not None and not isinstance(exc, _RunEnded):
                raise exc

        await self._finish()
        outcome = self._outcome()
        if canceled:
            raise asyncio.CancelledError("work order canceled")
        return outcome

    async def _iterate(self) -> None:
        order, ctx = self.order, self.ctx
        assert order is not None and ctx is not None
        try:
            self.workspace = await self._act(
                WorkspaceActivities.prepare_workspace, PrepareInput(ctx=ctx, work_order=order), timeout=1800
            )
        except ActivityError as err:
            _reraise_cancellation(err)
            self._end(RunEvent.SYSTEM_ERROR, self._error_from(err, ErrorType.WORKSPACE_ERROR, "prepare"))
            raise _RunEnded from err
        self.last_commit = self.workspace.base_commit
        self._apply(RunEvent.WORKSPACE_ACQUIRED)

        feedback_ref: str | None = None
        for n in range(1, order.max_iterations + 1):
            record = IterationRecord(iteration=n, started_at=workflow.now())
            self.history.append(record)
            self._apply(RunEvent.BUILD_STARTED if n == 1 else RunEvent.FEEDBACK_GENERATED)

            agent = await self._phase(record, "build", self._build(n, feedback_ref))
            self.admitted = True
            record.agent = agent
            self.session_id = agent.session_id or self.session_id
            if not agent.success:
                record.error = agent.error
                record.decision = "stop: the agent failed"
                self._end(RunEvent.BUILD_FAILED, agent.error)
                await self._close_iteration(record)
                raise _RunEnded
            self._apply(RunEvent.BUILD_COMPLETED)

            record.snapshot = await self._phase(record, "snapshot", self._snapshot(n))
            self.last_commit = record.snapshot.commit
            self._apply(RunEvent.SNAPSHOT_COMPLETED)

            verification = await self._phase(
                record,
                "verify",
                self._act(
                    VerifyActivities.verify,
                    VerifyInput(ctx=ctx, work_order=order, workspace=self.workspace, iteration=n),
                    timeout=sum(g.timeout_seconds for g in order.gates) + 300,
                    heartbeat=60,
                    task_queue=self.workspace.task_queue,
                ),
            )
            record.verification = verification
            if verification.passed:
                record.decision = "stop: all gates passed"
                self._apply(RunEvent.VERIFY_PASSED)
                await self._close_iteration(record)
                return
            if n == order.max_iterations:
                record.decision = f"stop: gates failed and the limit of {order.max_iterations} iteration(s) is reached"
                self._end(
                    RunEvent.VERIFY_FAILED_TERMINAL,
                    BuildError(
                        type=ErrorType.TEST_FAILED,
                        phase="verify",
                        iteration=n,
                        message="gates failed: " + ", ".join(g.name for g in verification.failed_gates),
                        exit_code=verification.failed_gates[0].exit_code if verification.failed_gates else None,
                        stdout_tail=verification.failed_gates[0].excerpt[-1000:] if verification.failed_gates else None,
                        files=[verification.report_ref] + [g.output_ref for g in verification.failed_gates],
                    ),
                )
                await self._close_iteration(record)
                raise _RunEnded
            self._apply(RunEvent.VERIFY_FAILED_RETRYABLE)
            fb = await self._phase(
                record,
                "feedback",
                self._act(
                    VerifyActivities.feedback,
                    FeedbackInput(ctx=ctx, iteration=n, verification=verification, agent=agent),
                    timeout=120,
                    task_queue=self.workspace.task_queue,
                ),
            )
            record.feedback = fb
            feedback_ref = fb.ref
            record.decision = f"continue: {fb.summary}"
            await self._close_iteration(record)

    # -- phases ----------------------------------------------------------------------
    async def _build(self, n: int, feedback_ref: str | None) -> AgentSummary:
        assert self.order and self.ctx and self.workspace
        timeout = self.order.max_wall_clock_seconds + 60
        try:
            return await self._act(
                BuildActivities.run_agent,
                BuildInput(
                    ctx=self.ctx,
                    work_order=self.order,
                    workspace=self.workspace,
                    iteration=n,
                    feedback_ref=feedback_ref,
                    session_id=self.session_id,
                ),
                timeout=timeout,
                heartbeat=60,
                retry=AGENT_RETRY,
                task_queue=self.workspace.agent_task_queue or self.workspace.task_queue,
            )
        except ActivityError as err:
            _reraise_cancellation(err)
            self._end(RunEvent.BUILD_FAILED, self._error_from(err, ErrorType.AGENT_CRASH, "build", n))
            self.history[-1].error = self.error
            await self._close_iteration(self.history[-1])
            raise _RunEnded from err

    async def _snapshot(self, n: int, salvage: bool = False):
        assert self.ctx and self.workspace and self.last_commit
        try:
            return await self._act(
                WorkspaceActivities.snapshot,
                SnapshotInput(ctx=self.ctx, workspace=self.workspace, iteration=n, previous_commit=self.last_commit),
                timeout=600,
                task_queue=self.workspace.task_queue,
            )
        except ActivityError as err:
            _reraise_cancellation(err)
            if salvage:
                raise
            self._end(RunEvent.SNAPSHOT_FAILED, self._error_from(err, ErrorType.SNAPSHOT_ERROR, "snapshot", n))
            await self._close_iteration(self.history[-1])
            raise _RunEnded from err

    async def _phase(self, record: IterationRecord, name: str, coro):
        started = workflow.now()
        try:
            result = await coro
        except (Exception, asyncio.CancelledError):
            # Not `finally`: on eviction the coroutine is closed (GeneratorExit) outside the workflow loop.
            record.phases.append(PhaseTiming(phase=name, started_at=started, ended_at=workflow.now()))
            raise
        record.phases.append(PhaseTiming(phase=name, started_at=started, ended_at=workflow.now()))
        return result

    async def _close_iteration(self, record: IterationRecord) -> None:
        record.ended_at = workflow.now()
        assert self.ctx is not None
        await self._act(
            RecordActivities.record_iteration, RecordIterationInput(ctx=self.ctx, record=record), timeout=60
        )

    async def _finish(self) -> None:
        """After the loop: salvage unfinished work, deliver the branch, persist the run record."""
        assert self.ctx and self.order
        self.ended_at = workflow.now()
        if self.workspace is not None:
            if self.sm.result in (RunResult.FAILED_TIMEOUT, RunResult.CANCELED, RunResult.FAILED_BUILD):
                try:
                    snap = await self._snapshot(max(1, len(self.history)), salvage=True)
                    if snap.changed or self.sm.result != RunResult.FAILED_BUILD:
                        self.partial = True
                        self.last_commit = snap.commit
                except ActivityError:
                    workflow.logger.warning("salvage snapshot failed")
            try:
                self.delivery = await self._act(
                    WorkspaceActivities.deliver_local,
                    DeliverInput(ctx=self.ctx, work_order=self.order, workspace=self.workspace),
                    timeout=600,
                    task_queue=self.workspace.task_queue,
                )
            except ActivityError as err:
                self.delivery = DeliveryResult(
                    mode="local",
                    branch=self.workspace.branch,
                    pushed=False,
                    message=f"delivery failed: {err.cause or err}",
                )
        self.ended_at = workflow.now()
        self.finished = True
        self._publish_state()
        await self._act(
            RecordActivities.finalize_run,
            FinalizeInput(ctx=self.ctx, work_order=self.order, outcome=self._outcome()),
            timeout=60,
        )

    async def _stop_loop(self, loop: asyncio.Future) -> None:
        loop.cancel()
        try:
            await loop
        except (asyncio.CancelledError, _RunEnded, ActivityError):
            pass

    # -- helpers -----------------------------------------------------------------------
    async def _act(
        self,
        fn,
        arg,
        *,
        timeout: float,
        heartbeat: float | None = None,
        retry: RetryPolicy = SHORT_RETRY,
        task_queue: str | None = None,
    ):
        return await workflow.execute_activity_method(
            fn,
            arg,
            start_to_close_timeout=timedelta(seconds=timeout),
            heartbeat_timeout=timedelta(seconds=heartbeat) if heartbeat else None,
            retry_policy=retry,
            task_queue=task_queue,
            cancellation_type=CANCEL_WAIT,
        )

    def _apply(self, event: RunEvent) -> None:
        self.sm.apply(event)
        self._publish_state()

    def _end(self, event: RunEvent, error: BuildError | None) -> None:
        if self.sm.terminal:
            return
        self.error = error
        self._apply(event)

    def _phase_name(self) -> str | None:
        return {
            RunState.BUILDING: "build",
            RunState.SNAPSHOTTING: "snapshot",
            RunState.VERIFYING: "verify",
            RunState.FEEDBACK: "feedback",
            RunState.QUEUED: "prepare",
        }.get(self.sm.state)

    def _error_from(self, err: ActivityError, default: ErrorType, phase: str, n: int | None = None) -> BuildError:
        cause = err.cause
        kind, message = default, str(cause or err)
        if isinstance(cause, ApplicationError):
            try:
                kind = ErrorType(cause.type) if cause.type else default
            except ValueError:
                kind = default
            message = cause.message
        return BuildError(type=kind, message=message, phase=phase, iteration=n)

    def _status(self) -> RunStatus:
        if self.sm.terminal and not self.finished:
            return RunStatus.RUNNING
        if not self.sm.terminal and (self.sm.state in (RunState.QUEUED, RunState.LEASED) or not self.admitted):
            return RunStatus.QUEUED
        if self.sm.state == RunState.SUCCEEDED:
            return RunStatus.SUCCEEDED
        if self.sm.state == RunState.FAILED:
            return RunStatus.FAILED
        if self.sm.state == RunState.CANCELED:
            return RunStatus.CANCELED
        return RunStatus.RUNNING

    def _publish_state(self) -> None:
        updates = [sa.STATUS.value_set(self._status().value), sa.STATE.value_set(self.sm.state.value)]
        if self.sm.result is not None:
            updates.append(sa.RESULT.value_set(self.sm.result.value))
        workflow.upsert_search_attributes(updates)

    def _outcome(self) -> RunOutcome:
        info = workflow.info()
        tokens = TokenUsage()
        cost = 0.0
        for rec in self.history:
            if rec.agent is not None:
                tokens = tokens + rec.agent.tokens
                cost += rec.agent.cost_usd or 0.0
        return RunOutcome(
            work_order_id=info.workflow_id,
            run_id=info.run_id,
            status=self._status(),
            state=self.sm.state.value,
            result=self.sm.result.value if self.sm.result else None,
            iterations=len(self.history),
            error=self.error.message if self.error else None,
            build_error=self.error,
            partial=self.partial,
            workspace=self.workspace,
            delivery=self.delivery,
            tokens=tokens,
            cost_usd=round(cost, 6),
            started_at=self.started_at,
            ended_at=self.ended_at,
            history=self.history,
        )
