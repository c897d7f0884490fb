"""The delivery CI loop under real Temporal (time-skipping server): timers, retries, fail-fast vs best-effort."""

from __future__ import annotations

import uuid
from pathlib import Path

from temporalio.worker import Worker

from activities.delivery import delivery_activities
from agentgate.delivery.models import DeliverySpec, RepoRef
from tests.fakes import delivery_fixtures as fx
from tests.fakes.delivery_fixtures import scan_for_secret, sh
from tests.fakes.delivery_workflow import DeliveryLoopWorkflow, LoopInput, LoopResult, fix_build
from tests.fakes.github_server import CI, FakeGitHub, github_actions_log

bare_remote, deps, fake_github, gh_token = fx.bare_remote, fx.deps, fx.fake_github, fx.gh_token
github_env, run_ctx, workspace = fx.github_env, fx.run_ctx, fx.workspace

REPO = RepoRef(owner="octo", repo="demo")
RED_LOG = github_actions_log(
    ["E       assert -1 == 5", "FAILED tests/test_mathlib.py::test_add - assert -1 == 5", "1 failed in 0.01s"],
    step="pytest -q",
)


async def run_loop(env, deps, run_ctx, workspace, spec: DeliverySpec) -> LoopResult:
    queue = f"delivery-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[DeliveryLoopWorkflow],
        activities=[*delivery_activities(deps), fix_build],
    ):
        return await env.client.execute_workflow(
            DeliveryLoopWorkflow.run,
            LoopInput(
                ctx=run_ctx,
                spec=spec,
                repo=REPO,
                workspace=workspace,
                run_dir=str(deps.store.run_dir(run_ctx)),
            ),
            id=f"delivery-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
            result_type=LoopResult,
        )


async def test_ci_red_then_feedback_iteration_then_green_and_ready(
    skip_env, deps, run_ctx, workspace, github_env: FakeGitHub, bare_remote: Path, gh_token: str
):
    first = sh(Path(workspace.path), "rev-parse", "HEAD")
    github_env.script_ci(first, CI.pending(), CI.red(RED_LOG, step="Run pytest -q"))
    # the fix commit is not known in advance: an unscripted sha shows no checks until we script it below
    github_env.inject("POST", r"/repos/octo/demo/pulls$", 502, {"message": "Bad Gateway"}, {"Retry-After": "1"})
    spec = DeliverySpec(mode="github-pr", ci={"poll_interval_seconds": 30, "no_checks_grace_seconds": 600})

    # script green CI for whatever commit the fix produces, as soon as it is pushed
    import asyncio

    async def script_green_for_next_push() -> None:
        while True:
            head = sh(bare_remote, "rev-parse", f"refs/heads/{workspace.branch}")
            if head != first:
                github_env.script_ci(head, CI.pending(), CI.green())
                return
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(script_green_for_next_push())
    try:
        result = await run_loop(skip_env, deps, run_ctx, workspace, spec)
    finally:
        watcher.cancel()

    assert result.path == [
        "pr_created",
        "ci_polling",
        "ci_failed",
        "feedback",
        "ci_polling",
        "ci_passed",
        "ready",
    ], result
    # 502 on the first create was retried by Temporal, honouring Retry-After
    assert [r.status for r in github_env.calls("POST", r"/pulls$")] == [502, 201]
    assert github_env.pulls[result.pr_number]["draft"] is False
    assert result.feedback_refs == ["feedback-ci-1.md"]
    feedback = deps.store.read_text(run_ctx, "feedback-ci-1.md")
    assert "Failing step: `Run pytest -q`" in feedback
    fixed = sh(bare_remote, "rev-parse", f"refs/heads/{workspace.branch}")
    assert fixed != first and "return a + b" in sh(bare_remote, "show", f"{fixed}:mathlib.py")
    assert scan_for_secret(deps.settings.home_dir, gh_token) == []


async def test_403_fails_fast_but_only_warns_in_best_effort(skip_env, deps, run_ctx, workspace, github_env):
    forbidden = {"message": "Resource not accessible by integration"}
    github_env.inject("POST", r"/pulls$", 403, forbidden)
    failed = await run_loop(skip_env, deps, run_ctx, workspace, DeliverySpec(mode="github-pr"))
    assert failed.error_type == "delivery_error" and failed.path == []
    assert len(github_env.calls("POST", r"/pulls$")) == 1  # non-retryable: exactly one attempt

    github_env.inject("POST", r"/pulls$", 403, forbidden)
    warned = await run_loop(
        skip_env, deps, run_ctx, workspace, DeliverySpec(mode="github-pr", github_mode="best_effort")
    )
    assert warned.error_type is None and warned.path == ["no_pr"]
    assert any("Resource not accessible by integration" in w for w in warned.warnings)


async def test_action_required_ends_the_loop_without_hanging(skip_env, deps, run_ctx, workspace, github_env):
    head = sh(Path(workspace.path), "rev-parse", "HEAD")
    github_env.script_ci(head, CI.pending(), CI.pending(), CI.action_required())
    result = await run_loop(skip_env, deps, run_ctx, workspace, DeliverySpec(mode="github-pr"))
    assert result.path == ["pr_created", "ci_polling", "action_required"]
    assert github_env.pulls[result.pr_number]["draft"] is True
