"""A minimal workflow running the delivery CI loop exactly as the work-order workflow should.

It exists to prove the activity contracts under real Temporal (retries, next_retry_delay,
non-retryable errors, durable timers between polls) before the loop moves into
`workflows/work_order.py`. The "build" step is a test activity that commits a fix.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.delivery import (
        DELIVERY_NON_RETRYABLE,
        CreatePullRequestInput,
        DeliveryActivities,
        FetchCIFailureInput,
        MarkReadyInput,
        PollCIInput,
        PushBranchInput,
    )
    from agentgate.delivery.models import DeliverySpec, PRTemplateContext, RepoRef, ci_verdict
    from agentgate.models import RunContext, WorkspaceInfo

GITHUB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=5,
    non_retryable_error_types=DELIVERY_NON_RETRYABLE,
)


class LoopInput(BaseModel):
    ctx: RunContext
    spec: DeliverySpec
    repo: RepoRef
    workspace: WorkspaceInfo
    run_dir: str


class LoopResult(BaseModel):
    path: list[str] = []
    warnings: list[str] = []
    pr_number: int | None = None
    feedback_refs: list[str] = []
    error_type: str | None = None


class FixInput(BaseModel):
    workspace: WorkspaceInfo
    feedback_path: str


@activity.defn(name="test_fix_build")
async def fix_build(inp: FixInput) -> str:
    """Stands in for the agent: reads the CI feedback and commits a fix on the run branch."""
    import subprocess
    from pathlib import Path

    from agentgate.git import git_env

    feedback = Path(inp.feedback_path).read_text()
    assert "E       assert -1 == 5" in feedback
    ws = Path(inp.workspace.path)
    (ws / "mathlib.py").write_text("def add(a, b):\n    return a + b\n")
    env = git_env()
    subprocess.run(["git", "commit", "-qam", "agentgate: iteration 2 (CI feedback)"], cwd=ws, check=True, env=env)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ws, check=True, env=env, capture_output=True, text=True
    ).stdout.strip()


@workflow.defn(name="DeliveryLoopTestWorkflow")
class DeliveryLoopWorkflow:
    @workflow.run
    async def run(self, inp: LoopInput) -> LoopResult:
        out = LoopResult()
        spec, ctx, repo, ws = inp.spec, inp.ctx, inp.repo, inp.workspace

        async def call(fn, arg, timeout: float = 120):
            return await workflow.execute_activity_method(
                fn, arg, start_to_close_timeout=timedelta(seconds=timeout), retry_policy=GITHUB_RETRY
            )

        try:
            pushed = await call(
                DeliveryActivities.push_branch, PushBranchInput(ctx=ctx, spec=spec, workspace=ws, repo=repo)
            )
            created = await call(
                DeliveryActivities.create_pull_request,
                CreatePullRequestInput(
                    ctx=ctx,
                    spec=spec,
                    workspace=ws,
                    repo=repo,
                    template=PRTemplateContext(
                        work_order_id=ctx.work_order_id, run_id=ctx.run_id, task_prompt="Implement add()", iterations=1
                    ),
                ),
            )
        except ActivityError as err:
            cause = err.cause
            out.error_type = cause.type if isinstance(cause, ApplicationError) else "unknown"
            return out
        if created.warning:
            out.warnings.append(created.warning)
        if created.pr is None:
            out.path.append("no_pr")
            return out
        pr = created.pr
        out.pr_number = pr.number
        out.path.append("pr_created")
        head = pushed.commit
        ci_round = 0
        while True:
            out.path.append("ci_polling")
            started = workflow.now()
            poll = 0
            while True:
                poll += 1
                elapsed = (workflow.now() - started).total_seconds()
                status = await call(
                    DeliveryActivities.poll_ci,
                    PollCIInput(ctx=ctx, spec=spec, repo=repo, head_sha=head, elapsed_seconds=elapsed, poll=poll),
                )
                verdict = ci_verdict(status, spec.ci)
                if verdict != "wait":
                    break
                if elapsed >= spec.ci.timeout_seconds:
                    out.path.append("ci_timeout")
                    return out
                await workflow.sleep(timedelta(seconds=spec.ci.poll_interval_seconds))
            if verdict == "passed":
                out.path.append("ci_passed")
                ready = await call(
                    DeliveryActivities.mark_pr_ready, MarkReadyInput(ctx=ctx, spec=spec, repo=repo, pr=pr)
                )
                out.path.append("ready" if ready.draft is False else "still_draft")
                return out
            if verdict == "action_required":
                out.path.append("action_required")
                return out
            if verdict == "error":
                out.warnings.append(status.warning or "CI status unavailable")
                return out
            out.path.append("ci_failed")
            ci_round += 1
            if ci_round > spec.ci.max_iterations:
                return out
            failure = await call(
                DeliveryActivities.fetch_ci_failure,
                FetchCIFailureInput(ctx=ctx, spec=spec, repo=repo, status=status, ci_iteration=ci_round),
            )
            out.feedback_refs.append(failure.feedback_ref or "")
            out.path.append("feedback")
            await workflow.execute_activity(
                fix_build,
                FixInput(workspace=ws, feedback_path=f"{inp.run_dir}/{failure.feedback_ref}"),
                start_to_close_timeout=timedelta(seconds=60),
            )
            pushed = await call(
                DeliveryActivities.push_branch,
                PushBranchInput(ctx=ctx, spec=spec, workspace=ws, repo=repo, iteration=ci_round + 1),
            )
            head = pushed.commit
