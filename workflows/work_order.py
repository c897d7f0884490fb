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
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutType, is_cancelled_exception
from temporalio.exceptions import TimeoutError as ActivityTimeoutError

with workflow.unsafe.imports_passed_through():
    from activities.admission import AdmissionActivities
    from activities.build import BuildActivities
    from activities.delivery import (
        DELIVERY_NON_RETRYABLE,
        CreatePullRequestInput,
        DeliveryActivities,
        FetchCIFailureInput,
        MarkReadyInput,
        PollCIInput,
        PushBranchInput,
    )
    from activities.errors import NON_RETRYABLE
    from activities.records import RecordActivities
    from activities.verify import VerifyActivities
    from activities.workspace import WorkspaceActivities
    from agentgate import search_attributes as sa
    from agentgate.delivery.models import GateRow, PRTemplateContext, ci_verdict, resolve_repo
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
        ProbeInput,
        RecordIterationInput,
        RestoreInput,
        RunContext,
        RunOutcome,
        RunStatus,
        SnapshotInput,
        TokenUsage,
        VerificationSummary,
        VerifyInput,
        WorkOrder,
        WorkspaceInfo,
        WorkspaceMove,
    )
    from agentgate.observability.errors import error_from_verification
    from agentgate.state_machine import RunEvent, RunResult, RunState, RunStateMachine
    from workflows.admission import (
        ADMISSION_PATCH,
        ADMITTED_SIGNAL,
        EnqueueRequest,
        LeaveRequest,
        SlotGrant,
        admission_workflow_id,
    )
    from workflows.convergence import (
        ConvergenceState,
        Decision,
        IterationObservation,
        StrategyError,
        decide,
    )

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
GITHUB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=6,
    non_retryable_error_types=NON_RETRYABLE + DELIVERY_NON_RETRYABLE,
)
CANCEL_WAIT = workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
# Workspace-bound phases get a schedule-to-start timeout (the order's host_start_timeout_seconds), and
# a lost worker's workspace is rebuilt elsewhere from the last checkpoint (`_relocate`).
CHECKPOINT_PATCH = "checkpoint-reprepare"
# Prepare and restore heartbeat, so a worker lost while cloning is noticed in half a minute, not after 30 minutes.
WORKSPACE_HEARTBEAT_PATCH = "workspace-heartbeat"
WORKSPACE_HEARTBEAT_SECONDS = 30.0
MAX_WORKSPACE_MOVES = 5
PROBE_RETRY = RetryPolicy(maximum_attempts=2, non_retryable_error_types=NON_RETRYABLE)


def _reraise_cancellation(err: ActivityError) -> None:
    """An activity that ended because we canceled it is not a phase failure."""
    if isinstance(err.cause, CancelledError) or is_cancelled_exception(err):
        raise asyncio.CancelledError() from err


class _RunEnded(Exception):
    """Internal: the iteration loop stopped on a classified error (already applied to the state machine)."""


class _QueueTimeout(Exception):
    """Internal: no slot of the global queue within the order's max_queue_seconds."""


# Joining the global queue (admission-v1): a signal-with-start, retried for a few minutes at most.
QUEUE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), backoff_coefficient=2.0, maximum_interval=timedelta(seconds=30),
    maximum_attempts=10, non_retryable_error_types=NON_RETRYABLE,
)  # fmt: skip


class _HostLost(Exception):
    """Internal: the worker holding the workspace is gone (it stopped heartbeating, or never picked a task up)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _lost_host_reason(err: ActivityError) -> str | None:
    """Why `err` means the workspace's worker may be gone, or None when it is an ordinary failure.

    A worker killed mid-phase shows first as a heartbeat timeout; Temporal retries the attempt on
    the same host queue, where nobody polls any more, and that attempt ends with this
    schedule-to-start timeout (which Temporal does not retry).
    """
    cause = err.cause
    if isinstance(cause, ActivityTimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START:
        return "no worker picked the task up from the workspace's queue in time"
    return None


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
        self.warnings: list[str] = []
        self.pr = None
        self.pushed_commit: str | None = None
        self.ci_state: str | None = None
        self.ci_rounds = 0
        self.observations: list[IterationObservation] = []
        self.stop_requested = False
        self.moves: list[WorkspaceMove] = []
        self.queued = False  # admission-v1: this run takes its slot from the global queue (workflows/admission.py)
        self.queue_ticket = 0  # slot requests made by this run (the first, then one per CI-fix round)
        self.queue_granted = 0  # the highest ticket the admission workflow granted

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

    @workflow.signal(name=ADMITTED_SIGNAL)
    def slot_admitted(self, grant: SlotGrant) -> None:
        """Sent by the admission workflow: the slot of `grant.ticket` is this run's (admission-v1)."""
        self.queue_granted = max(self.queue_granted, grant.ticket)

    @workflow.signal(name="stop")
    def request_stop(self) -> None:
        """An operator's stop (`agentgate stop ID`): the run ends after the current iteration."""
        self.stop_requested = True

    # -- main ------------------------------------------------------------------------
    @workflow.run
    async def run(self, order: WorkOrder) -> RunOutcome:
        self.order = order
        info = workflow.info()
        self.ctx = RunContext(work_order_id=info.workflow_id, run_id=info.run_id)
        self.started_at = workflow.now()
        await self._act(RecordActivities.record_run_started, self._outcome(), timeout=30)

        # admission-v1: first a slot of the global queue; the wall-clock limit starts once admitted
        # (the wait has its own limit, max_queue_seconds).
        self.queued = workflow.patched(ADMISSION_PATCH)
        loop: asyncio.Future | None = None
        canceled = False
        try:
            if self.queued:
                await self._admission(first=True)
            loop = asyncio.ensure_future(self._iterate())
            await workflow.wait_condition(lambda: loop.done(), timeout=timedelta(seconds=order.max_wall_clock_seconds))
        except _RunEnded:  # never admitted: the queue wait timed out, or the queue could not be joined
            pass
        except TimeoutError:
            assert loop is not None
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
            if loop is not None:
                await self._stop_loop(loop)
            self._end(
                RunEvent.USER_CANCELED,
                BuildError(type=ErrorType.CANCELED, message="the run was canceled",
                           phase=self._phase_name() if loop is not None else "queue"),
            )  # fmt: skip
        else:
            assert loop is not None
            exc = loop.exception()
            if exc is not None and not isinstance(exc, _RunEnded):
                raise exc

        if self.queued:  # the agent work is over (or never started): free the slot before salvage and delivery
            await self._leave_queue("run ended")
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
                WorkspaceActivities.prepare_workspace,
                PrepareInput(ctx=ctx, work_order=order),
                timeout=1800,
                heartbeat=self._workspace_heartbeat(),
            )
        except ActivityError as err:
            _reraise_cancellation(err)
            self._end(RunEvent.SYSTEM_ERROR, self._error_from(err, ErrorType.WORKSPACE_ERROR, "prepare"))
            raise _RunEnded from err
        self.last_commit = self.workspace.base_commit
        self._apply(RunEvent.WORKSPACE_ACQUIRED)

        feedback_ref: str | None = None
        n = 0
        while True:
            n += 1
            record, verification = await self._iteration(n, feedback_ref)
            decision = self._decide(n, record, verification)
            record.decision = f"{decision.action}: {decision.reason}"
            if decision.action == "continue":
                self._apply(
                    RunEvent.VERIFY_FAILED_RETRYABLE if not verification.passed else RunEvent.CONTINUE_REQUESTED
                )
                feedback_ref = None
                if not verification.passed:
                    fb = await self._phase(
                        record,
                        "feedback",
                        self._act(
                            VerifyActivities.feedback,
                            FeedbackInput(ctx=ctx, iteration=n, verification=verification, agent=record.agent),
                            timeout=120,
                            # It reads only the artifact store: any worker, so a lost host cannot strand it.
                            task_queue=None if self._relocatable() else self.workspace.task_queue,
                        ),
                    )
                    record.feedback = fb
                    feedback_ref = fb.ref
                await self._close_iteration(record)
                continue
            if not verification.passed:
                error = error_from_verification(verification, n) or BuildError(
                    type=ErrorType.TEST_FAILED, message="verification failed", phase="verify", iteration=n
                )
                if "budget" in decision.code:
                    error.type = ErrorType.BUDGET_EXCEEDED
                    error.message = f"{decision.reason}; {error.message}"
                self._end(RunEvent.VERIFY_FAILED_TERMINAL, error)
                await self._close_iteration(record)
                raise _RunEnded

            if not order.delivery.wants_pr:
                self._apply(RunEvent.VERIFY_PASSED)
                await self._close_iteration(record)
                return
            record.decision += "; delivering: pull request and CI next"
            await self._close_iteration(record)
            if self.queued:  # no agent runs while CI does: the slot goes to the next order meanwhile
                await self._leave_queue("waiting on CI")
            feedback_ref = await self._deliver_pull_request(n)
            if feedback_ref is None:
                return
            if self.queued:  # the CI fix runs the agent again: it queues for a slot like any order
                await self._admission()
            # CI failed and another round is allowed: the next iteration builds on its feedback.

    async def _iteration(self, n: int, feedback_ref: str | None) -> tuple[IterationRecord, VerificationSummary]:
        """build → snapshot → verify; a failed build or snapshot ends the run (raises _RunEnded)."""
        order, ctx = self.order, self.ctx
        assert order is not None and ctx is not None and self.workspace is not None
        record = IterationRecord(iteration=n, started_at=workflow.now())
        self.history.append(record)
        self._apply(RunEvent.BUILD_STARTED if n == 1 else RunEvent.FEEDBACK_GENERATED)

        while True:  # more than once only when the worker was lost before the snapshot (see _relocate)
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
            try:
                record.snapshot = await self._phase(record, "snapshot", self._snapshot(n))
                break
            except _HostLost as lost:  # the iteration's work was only on that worker's disk: build it again
                await self._relocate(n, "snapshot", lost.reason)
                self._apply(RunEvent.WORKSPACE_MOVED)

        self.last_commit = record.snapshot.commit
        self._apply(RunEvent.SNAPSHOT_COMPLETED)
        if order.delivery.push_every_iteration and order.delivery.uses_github:
            await self._push(n)

        while True:  # more than once only when the worker was lost: the snapshot is checkpointed, verify again
            try:
                verification = await self._phase(
                    record,
                    "verify",
                    self._act(
                        VerifyActivities.verify,
                        VerifyInput(ctx=ctx, workspace=self.workspace, iteration=n),
                        timeout=order.verify_timeout_seconds,
                        heartbeat=60,
                        task_queue=self.workspace.task_queue,
                        **self._host_options(),
                    ),
                )
                break
            except ActivityError as err:  # e.g. an invalid verify.yaml: the message names the line and key
                _reraise_cancellation(err)
                lost = self._lost_host(err)
                if lost is not None:
                    await self._relocate(n, "verify", lost)
                    continue
                record.error = self._error_from(err, ErrorType.SYSTEM_ERROR, "verify", n)
                record.decision = "stop: verification could not run"
                self._end(RunEvent.SYSTEM_ERROR, record.error)
                await self._close_iteration(record)
                raise _RunEnded from err
        record.verification = verification
        return record, verification

    def _decide(self, n: int, record: IterationRecord, verification: VerificationSummary) -> Decision:
        """The convergence strategy's decision after iteration n; limits (iterations, budget) always win."""
        order = self.order
        assert order is not None
        self.observations.append(
            IterationObservation(
                iteration=n,
                progress=verification.progress
                if verification.progress is not None
                else (1.0 if verification.passed else 0.0),
                changed=bool(record.snapshot and record.snapshot.changed),
                passed=verification.passed,
                final_message=record.agent.final_message if record.agent else None,
            )
        )
        tokens, cost = self._totals()
        over_budget = (order.max_total_tokens is not None and tokens.total >= order.max_total_tokens) or (
            order.max_cost_usd is not None and cost >= order.max_cost_usd
        )
        state = ConvergenceState(
            iteration=n,
            max_iterations=order.max_iterations,
            history=self.observations,
            stop_requested=self.stop_requested,
            budget_exceeded=over_budget,
        )
        try:
            return decide(order.convergence, state)
        except StrategyError as exc:
            record.decision = f"stop: the {order.convergence.strategy} strategy failed"
            self._end(
                RunEvent.SYSTEM_ERROR,
                BuildError(type=ErrorType.SYSTEM_ERROR, message=str(exc), phase="convergence", iteration=n),
            )
            raise _RunEnded from exc

    # -- delivery: push, pull request, CI loop ------------------------------------------
    async def _push(self, n: int | None) -> str | None:
        """Push the run's branch; returns the pushed commit (None when a best-effort push failed)."""
        order, ctx = self.order, self.ctx
        assert order and ctx and self.workspace
        try:
            pushed = await self._act(
                DeliveryActivities.push_branch,
                PushBranchInput(
                    ctx=ctx, spec=order.delivery, workspace=self.workspace, repo=self._repo(), iteration=n
                ),  # fmt: skip
                timeout=600,
                retry=GITHUB_RETRY,
                task_queue=self.workspace.task_queue,
                **self._host_options(),
            )
        except ActivityError as err:
            _reraise_cancellation(err)
            return self._delivery_failure(err, "push")
        if pushed.warning:
            self.warnings.append(pushed.warning)
        self.pushed_commit = pushed.commit or self.pushed_commit
        return pushed.commit

    def _repo(self):
        assert self.order is not None
        return resolve_repo(self.order.delivery, self.order.workspace_source)

    def _delivery_failure(self, err: ActivityError, what: str) -> None:
        """fail_fast: the run fails with delivery_error; best_effort: a recorded warning."""
        assert self.order is not None
        error = self._error_from(err, ErrorType.DELIVERY_ERROR, "delivery")
        if self.order.delivery.effective_github_mode.value == "fail_fast":
            self._end(RunEvent.SYSTEM_ERROR, error)
            raise _RunEnded from err
        self.warnings.append(f"{what} failed (best effort): {error.message}")
        return None

    async def _deliver_pull_request(self, n: int) -> str | None:
        """After verified work: push, open (or reuse) the PR, follow CI. Returns CI feedback when
        another iteration should fix a CI failure, None when the run has ended."""
        order, ctx = self.order, self.ctx
        assert order and ctx and self.workspace
        spec, repo = order.delivery, self._repo()
        head = await self._push(n)
        if head is None or repo is None:
            if repo is None:
                self.warnings.append("no GitHub repository known: set delivery.owner/repo or use a github source")
            self._apply(RunEvent.VERIFY_PASSED)
            return None
        if self.pr is None:
            try:
                created = await self._act(
                    DeliveryActivities.create_pull_request,
                    CreatePullRequestInput(
                        ctx=ctx, spec=spec, workspace=self.workspace, repo=repo, template=self._pr_template()
                    ),  # fmt: skip
                    timeout=300,
                    retry=GITHUB_RETRY,
                )
            except ActivityError as err:
                _reraise_cancellation(err)
                self._delivery_failure(err, "pull request")
                self._apply(RunEvent.VERIFY_PASSED)
                return None
            if created.warning:
                self.warnings.append(created.warning)
            if created.pr is None:
                self._apply(RunEvent.VERIFY_PASSED)
                return None
            self.pr = created.pr
        self._apply(RunEvent.PR_CREATED)
        if not spec.wants_ci:
            self._apply(RunEvent.VERIFY_PASSED)
            return None
        self._apply(RunEvent.CI_POLLING_STARTED)
        try:
            verdict, status = await self._poll_ci(head)
        except ActivityError as err:  # fail_fast: the run fails; best_effort (retries exhausted): CI unknown
            _reraise_cancellation(err)
            self._delivery_failure(err, "CI polling")
            self.ci_state = "error"
            self._apply(RunEvent.CI_INCONCLUSIVE)
            return None
        self.ci_state = verdict
        if verdict == "passed":
            await self._mark_ready()
            self._apply(RunEvent.CI_PASSED)
            return None
        if verdict in ("action_required", "error"):
            reason = (
                "CI awaits an approval: " + ", ".join(c.name for c in status.awaiting_approval)
                if verdict == "action_required"
                else f"CI status unavailable: {status.warning or status.summary}"
            )
            if verdict == "action_required" and spec.ci.on_action_required == "fail":
                self._apply(RunEvent.CI_FAILED)
                self._end(RunEvent.VERIFY_FAILED_TERMINAL, BuildError(type=ErrorType.CI_FAILED, message=reason,
                                                                      phase="ci", iteration=n))  # fmt: skip
                raise _RunEnded
            self.warnings.append(reason)
            self._apply(RunEvent.CI_INCONCLUSIVE)
            return None
        if verdict == "timeout":
            self._end(RunEvent.CI_TIMEOUT, BuildError(
                type=ErrorType.CI_FAILED, phase="ci", iteration=n,
                message=f"CI did not finish within {spec.ci.timeout_seconds:g} s"))  # fmt: skip
            raise _RunEnded
        self._apply(RunEvent.CI_FAILED)
        self.ci_rounds += 1
        failing = ", ".join(c.name for c in status.failing) or status.summary
        if self.ci_rounds > spec.ci.max_iterations:
            self._end(
                RunEvent.VERIFY_FAILED_TERMINAL,
                BuildError(
                    type=ErrorType.CI_FAILED,
                    phase="ci",
                    iteration=n,
                    message=f"CI failed ({failing}); the limit of {spec.ci.max_iterations} CI fix round(s) is reached",
                ),
            )
            raise _RunEnded
        try:
            summary = await self._act(
                DeliveryActivities.fetch_ci_failure,
                FetchCIFailureInput(ctx=ctx, spec=spec, repo=repo, status=status, ci_iteration=self.ci_rounds),
                timeout=600,
                retry=GITHUB_RETRY,
            )
        except ActivityError as err:
            _reraise_cancellation(err)
            self._delivery_failure(err, "fetching the CI failure")
            summary = None
        if summary is None or summary.feedback_ref is None:  # None would read as "run ended": end it for real
            if summary is not None and summary.warning:
                self.warnings.append(summary.warning)
            self._end(RunEvent.VERIFY_FAILED_TERMINAL, BuildError(
                type=ErrorType.CI_FAILED, phase="ci", iteration=n,
                message=f"CI failed ({failing}); no CI feedback could be fetched for another round"))  # fmt: skip
            raise _RunEnded
        return summary.feedback_ref

    async def _poll_ci(self, head: str):
        order, ctx = self.order, self.ctx
        assert order and ctx
        spec, repo = order.delivery, self._repo()
        started = workflow.now()
        poll = 0
        while True:
            poll += 1
            elapsed = (workflow.now() - started).total_seconds()
            status = await self._act(
                DeliveryActivities.poll_ci,
                PollCIInput(ctx=ctx, spec=spec, repo=repo, head_sha=head, elapsed_seconds=elapsed, poll=poll),
                timeout=120,
                retry=GITHUB_RETRY,
            )
            verdict = ci_verdict(status, spec.ci)
            if verdict != "wait":
                return verdict, status
            if elapsed >= spec.ci.timeout_seconds:
                return "timeout", status
            await workflow.sleep(timedelta(seconds=spec.ci.poll_interval_seconds))

    async def _mark_ready(self) -> None:
        assert self.order and self.ctx and self.pr
        if not self.order.delivery.draft:
            return
        try:
            ready = await self._act(
                DeliveryActivities.mark_pr_ready,
                MarkReadyInput(ctx=self.ctx, spec=self.order.delivery, repo=self._repo(), pr=self.pr),
                timeout=120,
                retry=GITHUB_RETRY,
            )
        except ActivityError as err:
            _reraise_cancellation(err)
            self.warnings.append(f"could not mark the pull request ready: {err.cause or err}")
            return
        if ready.warning:
            self.warnings.append(ready.warning)

    def _pr_template(self):
        assert self.order and self.ctx
        last = self.history[-1].verification if self.history else None
        gates = [GateRow(name=g.name, passed=g.passed, duration_ms=g.duration_ms) for g in (last.gates if last else [])]
        levels = [g.level for g in (last.gates if last else []) if g.passed and g.level]
        _, cost = self._totals()
        return PRTemplateContext(
            work_order_id=self.ctx.work_order_id, run_id=self.ctx.run_id, task_prompt=self.order.task_prompt,
            iterations=len(self.history), highest_level_passed=levels[-1] if levels else None, gates=gates,
            cost_usd=round(cost, 6) if cost else None,
        )  # fmt: skip

    # -- phases ----------------------------------------------------------------------
    async def _build(self, n: int, feedback_ref: str | None) -> AgentSummary:
        """The build; scheduled again while the workspace's worker is busy, and elsewhere once it is lost."""
        while True:
            summary = await self._build_attempt(n, feedback_ref)
            if summary is not None:
                return summary

    async def _build_attempt(self, n: int, feedback_ref: str | None) -> AgentSummary | None:
        assert self.order and self.ctx and self.workspace
        timeout = self.order.max_wall_clock_seconds + 60
        # Stale detection (docs/operations.md): the heartbeat timeout is how soon a lost worker is noticed and
        # the attempt retried; `agent.options.heartbeat_timeout_seconds` tunes it (2-600 s, default 60).
        stale_aware = workflow.patched("agent-heartbeat-timeout-option")
        heartbeat = 60.0
        if stale_aware:
            try:
                heartbeat = float(self.order.agent.options.get("heartbeat_timeout_seconds") or 60.0)
            except (TypeError, ValueError):
                pass
            heartbeat = min(max(heartbeat, 2.0), 600.0) if heartbeat == heartbeat else 60.0  # NaN: default
        try:
            return await self._act(
                BuildActivities.run_agent,
                BuildInput(
                    ctx=self.ctx,
                    workspace=self.workspace,
                    iteration=n,
                    feedback_ref=feedback_ref,
                    session_id=self.session_id,
                ),
                timeout=timeout,
                heartbeat=heartbeat,
                retry=AGENT_RETRY,
                task_queue=self.workspace.agent_task_queue or self.workspace.task_queue,
                **self._host_options(),
            )
        except ActivityError as err:
            _reraise_cancellation(err)
            lost = self._lost_host(err)
            if lost is not None:  # not started in time: a busy worker is waited for, a lost one left behind
                if not await self._host_alive():
                    await self._relocate(n, "build", lost)
                return None
            error = self._error_from(err, ErrorType.AGENT_CRASH, "build", n)
            if stale_aware and getattr(getattr(err.cause, "type", None), "name", None) == "HEARTBEAT":
                error = BuildError(type=ErrorType.AGENT_STALLED, phase="build", iteration=n, message=(
                    f"no heartbeat from the agent activity for {heartbeat:g} s on its last attempt (worker killed, "
                    "frozen or cut off) and no retry left"))  # fmt: skip
            self._end(RunEvent.BUILD_FAILED, error)
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
                **self._host_options(),
            )
        except ActivityError as err:
            _reraise_cancellation(err)
            if salvage:
                raise
            lost = self._lost_host(err)
            if lost is not None:
                raise _HostLost(lost) from err
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
                try:  # whatever the agent wrote before the limit hit becomes a commit on the branch
                    snap = await self._snapshot(max(1, len(self.history)), salvage=True)
                    if snap.changed:
                        self.last_commit = snap.commit
                except ActivityError:
                    self.warnings.append("the salvage commit failed; the workspace keeps the files")
            self.partial = self.sm.result != RunResult.PASSED and self.last_commit != self.workspace.base_commit
            self.delivery = await self._final_delivery()
        self.ended_at = workflow.now()
        self.finished = True
        self._publish_state()
        await self._act(
            RecordActivities.finalize_run,
            FinalizeInput(ctx=self.ctx, outcome=self._outcome()),
            timeout=60,
        )

    async def _final_delivery(self) -> DeliveryResult:
        assert self.ctx and self.order and self.workspace
        spec = self.order.delivery
        if spec.uses_github:
            if self.pushed_commit != self.last_commit:
                try:
                    await self._push(None)
                except _RunEnded:  # fail_fast push of salvaged work: the run already ended; keep its result
                    self.warnings.append("the final push failed")
            return DeliveryResult(
                mode=spec.mode.value, branch=self.workspace.branch, commit=self.pushed_commit,
                target=self._repo().full_name if self._repo() else None, pushed=self.pushed_commit is not None,
                pr_number=self.pr.number if self.pr else None, pr_url=self.pr.html_url if self.pr else None,
                ci_state=self.ci_state, ci_rounds=self.ci_rounds,
            )  # fmt: skip
        try:
            return await self._act(
                WorkspaceActivities.deliver_local,
                DeliverInput(ctx=self.ctx, workspace=self.workspace),
                timeout=600,
                task_queue=self.workspace.task_queue,
                **self._host_options(),
            )
        except ActivityError as err:
            lost = self._lost_host(err)
            if lost is not None:  # deliver from the last checkpoint, restored on a worker that is up
                try:
                    await self._relocate(len(self.history), "delivery", lost)
                except _RunEnded:
                    pass
                else:
                    return await self._final_delivery()
            self.warnings.append(f"local delivery failed: {err.cause or err}")
            return DeliveryResult(mode="local", branch=self.workspace.branch, pushed=False,
                                  message=f"delivery failed: {err.cause or err}")  # fmt: skip

    def _totals(self) -> tuple[TokenUsage, float]:
        tokens, cost = TokenUsage(), 0.0
        for rec in self.history:
            if rec.agent is not None:
                tokens = tokens + rec.agent.tokens
                cost += rec.agent.cost_usd or 0.0
        return tokens, cost

    async def _stop_loop(self, loop: asyncio.Future) -> None:
        loop.cancel()
        try:
            await loop
        except (asyncio.CancelledError, _RunEnded, ActivityError):
            pass

    # -- a lost worker: the workspace follows the run (agentgate/checkpoints.py) ---------------
    def _relocatable(self) -> bool:
        """Runs started by this version checkpoint every commit and can move their workspace."""
        return workflow.patched(CHECKPOINT_PATCH)

    @staticmethod
    def _workspace_heartbeat() -> float | None:
        return WORKSPACE_HEARTBEAT_SECONDS if workflow.patched(WORKSPACE_HEARTBEAT_PATCH) else None

    def _host_options(self) -> dict:
        """Extra options of an activity on the workspace's worker: how long it may wait to be picked up."""
        if self.order is None or not self._relocatable():
            return {}
        return {"schedule_to_start": self.order.host_start_timeout_seconds}

    def _lost_host(self, err: ActivityError) -> str | None:
        return _lost_host_reason(err) if self._relocatable() else None

    async def _host_alive(self) -> bool:
        """Whether the workspace's worker still answers on its own queue and holds the workspace.

        Asked when a build was not started in time: its agent slots may just be taken by other
        runs (then the build waits on), or the worker may be gone (then the probe is not picked up either).
        """
        assert self.ctx and self.workspace and self.order
        try:
            return await self._act(
                WorkspaceActivities.probe_workspace,
                ProbeInput(ctx=self.ctx, workspace=self.workspace),
                timeout=60,
                retry=PROBE_RETRY,
                task_queue=self.workspace.task_queue,
                schedule_to_start=self.order.host_start_timeout_seconds,
            )
        except ActivityError as err:
            _reraise_cancellation(err)
            return False

    def _last_checkpoint(self) -> str | None:
        """The checkpoint ref of `last_commit`: the latest snapshot that has one, else the base."""
        assert self.workspace is not None
        for rec in reversed(self.history):
            if rec.snapshot is not None and rec.snapshot.commit == self.last_commit:
                return rec.snapshot.checkpoint_ref
        return self.workspace.checkpoint_ref if self.last_commit == self.workspace.base_commit else None

    async def _relocate(self, n: int, phase: str, reason: str) -> None:
        """Re-prepare the workspace on whichever worker is up, from the checkpoint of `last_commit`.

        Nothing that completed is lost: `last_commit` is the last snapshot (every snapshot is
        checkpointed before it returns), so the caller re-runs only the phase that was cut off.
        Raises _RunEnded (the run failed) when there is no checkpoint, no restore, or too many moves.
        """
        assert self.ctx and self.workspace and self.last_commit
        old = self.workspace
        ref = self._last_checkpoint()
        error: BuildError | None = None
        if ref is None:
            error = BuildError(type=ErrorType.WORKSPACE_ERROR, phase=phase, iteration=n,
                               message=f"the worker holding the workspace was lost ({reason}) and commit "
                               f"{self.last_commit[:12]} has no checkpoint to restore it from")  # fmt: skip
        elif len(self.moves) >= MAX_WORKSPACE_MOVES:
            error = BuildError(type=ErrorType.WORKSPACE_ERROR, phase=phase, iteration=n,
                               message=f"the workspace's worker was lost again ({reason}) after "
                               f"{len(self.moves)} moves; giving up")  # fmt: skip
        else:
            restore = RestoreInput(
                ctx=self.ctx, workspace=old, checkpoint_ref=ref, commit=self.last_commit, iteration=n, reason=reason
            )
            try:  # on the shared queue: any worker that is up
                self.workspace = await self._act(
                    WorkspaceActivities.restore_workspace, restore, timeout=1800, heartbeat=self._workspace_heartbeat()
                )
            except ActivityError as err:
                _reraise_cancellation(err)
                error = self._error_from(err, ErrorType.WORKSPACE_ERROR, "restore", n)
        if error is not None:
            if not self.sm.terminal:
                self._end(RunEvent.SYSTEM_ERROR, error)
                if self.history:
                    self.history[-1].error = error
                    await self._close_iteration(self.history[-1])
            raise _RunEnded
        assert ref is not None and self.workspace is not None
        self.moves.append(WorkspaceMove(
            iteration=n, phase=phase, from_host=old.host_id, to_host=self.workspace.host_id, checkpoint_ref=ref,
            commit=self.last_commit, reason=reason, at=workflow.now()))  # fmt: skip
        self.warnings.append(
            f"workspace moved from host {old.host_id} to host {self.workspace.host_id} at iteration {n} "
            f"({phase}: {reason}); restored from checkpoint {ref}"
        )

    # -- the global queue (admission-v1, workflows/admission.py) ------------------------
    async def _admission(self, first: bool = False) -> None:
        """Wait for a slot; when there is none in time (or no queue to join) the run ends (raises _RunEnded)."""
        try:
            await self._acquire_slot(watch_cancel=first)
        except _QueueTimeout:
            assert self.order is not None
            limit = self.order.max_queue_seconds or 0
            message = f"no agent slot within the order's max_queue_seconds of {limit:g} s"
            self._end(RunEvent.TIMEOUT, BuildError(type=ErrorType.QUEUE_TIMEOUT, message=message, phase="queue"))
            raise _RunEnded from None
        except ActivityError as err:
            _reraise_cancellation(err)
            self._end(RunEvent.SYSTEM_ERROR, self._error_from(err, ErrorType.SYSTEM_ERROR, "queue"))
            raise _RunEnded from err

    async def _acquire_slot(self, watch_cancel: bool = False) -> None:
        """Join the queue (an idempotent signal-with-start; the API may have enqueued this run already)
        and wait for the `admitted` signal of this ticket.

        `watch_cancel` (the first wait, in the main task): a cancel that arrived while an activity was
        finishing anyway (record_run_started, the enqueue itself) was absorbed by that activity's
        result, so the request itself is checked; otherwise the canceled order would wait on."""
        assert self.order and self.ctx

        def canceled() -> bool:
            return watch_cancel and workflow.cancellation_reason() is not None

        if canceled():
            raise asyncio.CancelledError("work order canceled")
        self.queue_ticket += 1
        ticket = self.queue_ticket
        asked = workflow.now()
        await self._act(
            AdmissionActivities.enqueue,
            EnqueueRequest(
                work_order_id=self.ctx.work_order_id, run_id=self.ctx.run_id, ticket=ticket,
                priority=self.order.priority, fairness_key=self.order.fairness_key,
            ),  # fmt: skip
            timeout=30,
            retry=QUEUE_RETRY,
        )
        limit = self.order.max_queue_seconds
        if self.queue_granted < ticket and not canceled():
            remaining = None if limit is None else limit - (workflow.now() - asked).total_seconds()
            if remaining is not None and remaining <= 0:
                raise _QueueTimeout
            try:
                await workflow.wait_condition(lambda: self.queue_granted >= ticket or canceled(), timeout=remaining)
            except TimeoutError:
                raise _QueueTimeout from None
        if canceled():
            raise asyncio.CancelledError("work order canceled")

    async def _leave_queue(self, reason: str) -> None:
        """Give the slot back, or withdraw the waiting request, at once. Never fails the run: a queue
        that cannot be told finds the closed run by its own reconcile."""
        assert self.ctx
        held = 0 < self.queue_ticket <= self.queue_granted
        try:
            queue = workflow.get_external_workflow_handle(admission_workflow_id(workflow.info().task_queue))
            await queue.signal(
                "release" if held else "withdraw",
                LeaveRequest(work_order_id=self.ctx.work_order_id, run_id=self.ctx.run_id, reason=reason),
            )
        except Exception as exc:  # noqa: BLE001 - e.g. the admission workflow does not exist
            workflow.logger.warning("could not leave the queue (%s): %s", reason, exc)

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
        schedule_to_start: float | None = None,
    ):
        return await workflow.execute_activity_method(
            fn,
            arg,
            start_to_close_timeout=timedelta(seconds=timeout),
            heartbeat_timeout=timedelta(seconds=heartbeat) if heartbeat else None,
            schedule_to_start_timeout=timedelta(seconds=schedule_to_start) if schedule_to_start else None,
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
        tokens, cost = self._totals()
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
            warnings=list(self.warnings),
            workspace=self.workspace,
            delivery=self.delivery,
            tokens=tokens,
            cost_usd=round(cost, 6),
            started_at=self.started_at,
            ended_at=self.ended_at,
            history=self.history,
            workspace_moves=list(self.moves),
        )
