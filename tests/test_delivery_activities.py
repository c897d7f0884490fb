"""Delivery activities against a fake GitHub over real HTTP, a real bare git remote, Temporal's activity harness."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.delivery import (
    CreatePullRequestInput,
    DeliveryActivities,
    FetchCIFailureInput,
    MarkReadyInput,
    PollCIInput,
    PushBranchInput,
)
from agentgate.delivery.models import DeliverySpec, GateRow, PRTemplateContext, RepoRef, ci_verdict
from tests.fakes import delivery_fixtures as fx
from tests.fakes.delivery_fixtures import commit_file, scan_for_secret, sh
from tests.fakes.github_server import CI, FakeCheck, FakeGitHub, FakeStatus, github_actions_log

# fixtures (re-exported so pytest finds them in this module)
bare_remote, deps, fake_github, gh_token = fx.bare_remote, fx.deps, fx.fake_github, fx.gh_token
github_env, run_ctx, workspace = fx.github_env, fx.run_ctx, fx.workspace

REPO = RepoRef(owner="octo", repo="demo")
FAILING_LOG = github_actions_log(
    [
        "collected 2 items",
        "tests/test_mathlib.py F.                                                 [100%]",
        "E       assert -1 == 5",
        "E        +  where -1 = add(2, 3)",
        "FAILED tests/test_mathlib.py::test_add - assert -1 == 5",
        "========================= 1 failed, 1 passed in 0.02s ==========================",
    ],
    step="pytest -q",
)


def spec(**kw) -> DeliverySpec:
    base = {
        "mode": "github-pr",
        "labels": ["agentgate"],
        "reviewers": ["octocat"],
        "assignees": ["hubot"],
        "ci": {"no_checks_grace_seconds": 30},
    }
    return DeliverySpec.model_validate({**base, **kw})


def template(ctx) -> PRTemplateContext:
    return PRTemplateContext(
        work_order_id=ctx.work_order_id,
        run_id=ctx.run_id,
        task_prompt="Implement add()",
        iterations=1,
        gates=[GateRow(name="pytest", passed=True, duration_ms=900)],
        cost_usd=0.12,
    )


async def push_and_open_pr(acts, run_ctx, workspace, s: DeliverySpec):
    env = ActivityEnvironment()
    pushed = await env.run(acts.push_branch, PushBranchInput(ctx=run_ctx, spec=s, workspace=workspace, repo=REPO))
    created = await env.run(
        acts.create_pull_request,
        CreatePullRequestInput(ctx=run_ctx, spec=s, workspace=workspace, repo=REPO, template=template(run_ctx)),
    )
    return pushed, created


async def test_pr_created_then_marked_ready_after_green_ci(
    deps, run_ctx, workspace, github_env: FakeGitHub, bare_remote: Path, gh_token: str
):
    acts, env, s = DeliveryActivities(deps), ActivityEnvironment(), spec()
    head = sh(Path(workspace.path), "rev-parse", "HEAD")

    pushed, created = await push_and_open_pr(acts, run_ctx, workspace, s)

    # pushed over smart HTTP with the token in a header, to the clone_url the API reported
    assert pushed.ok and pushed.pushed and pushed.commit == head
    assert pushed.remote == github_env.clone_url
    assert sh(bare_remote, "rev-parse", f"refs/heads/{workspace.branch}") == head
    assert gh_token not in (Path(workspace.path) / ".git" / "config").read_text()
    # draft PR against the repository's default branch (trunk, not a hard-coded main), with the extras
    pr = created.pr
    assert created.ok and pr is not None and pr.draft and pr.created
    assert pr.base_ref == "trunk" and pr.head_ref == workspace.branch and pr.head_sha == head
    body = github_env.calls("POST", r"/pulls$")[0].json
    assert body["draft"] is True and body["title"] == "AgentGate: Implement add()"
    assert run_ctx.run_id in body["body"] and "| `pytest` | ✅ passed" in body["body"]
    assert github_env.labels[pr.number] == ["agentgate"]
    assert github_env.pulls[pr.number]["reviewers"] == ["octocat"]
    assert github_env.pulls[pr.number]["assignees"] == ["hubot"]
    api_calls = [r for r in github_env.requests if ".git/" not in r.path]
    git_calls = [r for r in github_env.requests if ".git/" in r.path]
    assert api_calls and all(r.authorized for r in api_calls)
    assert any(r.path.endswith("git-receive-pack") and r.status == 200 for r in git_calls)

    # a retried attempt finds the PR instead of failing on "already exists"
    again = await env.run(
        acts.create_pull_request,
        CreatePullRequestInput(ctx=run_ctx, spec=s, workspace=workspace, repo=REPO, template=template(run_ctx)),
    )
    assert again.pr is not None and again.pr.number == pr.number and not again.pr.created

    github_env.script_ci(head, CI.pending(), CI.green())
    first = await env.run(acts.poll_ci, PollCIInput(ctx=run_ctx, spec=s, repo=REPO, head_sha=head, poll=1))
    assert first.state == "pending" and ci_verdict(first, s.ci) == "wait"
    second = await env.run(acts.poll_ci, PollCIInput(ctx=run_ctx, spec=s, repo=REPO, head_sha=head, poll=2))
    assert second.state == "passed", second.summary
    assert [c.name for c in second.checks] == ["test"]

    ready = await env.run(acts.mark_pr_ready, MarkReadyInput(ctx=run_ctx, spec=s, repo=REPO, pr=pr))
    assert ready.ok and ready.draft is False
    assert github_env.pulls[pr.number]["draft"] is False
    gql = github_env.calls("POST", r"^/graphql$")[0]
    assert "markPullRequestReadyForReview" in gql.json["query"] and gql.json["variables"] == {"id": pr.node_id}

    events = (deps.store.run_dir(run_ctx) / "events.jsonl").read_text()
    for kind in ("delivery_pushed", "pr_created", "ci_polled", "pr_marked_ready"):
        assert f'"type":"{kind}"' in events


async def test_red_ci_becomes_feedback_with_failing_step_and_error_lines(deps, run_ctx, workspace, github_env):
    acts, env, s = DeliveryActivities(deps), ActivityEnvironment(), spec()
    head = sh(Path(workspace.path), "rev-parse", "HEAD")
    await push_and_open_pr(acts, run_ctx, workspace, s)
    github_env.script_ci(
        head,
        CI(
            runs=CI.red(FAILING_LOG, step="Run pytest -q").runs,
            checks=[FakeCheck("codecov", conclusion="failure", title="Coverage dropped", summary="-3.2%")],
            statuses=[FakeStatus("ci/jenkins", "failure", "Build #12 failed", "https://jenkins.example/12")],
        ),
    )
    status = await env.run(acts.poll_ci, PollCIInput(ctx=run_ctx, spec=s, repo=REPO, head_sha=head))
    assert status.state == "failed"
    assert {c.name for c in status.failing} == {"test", "codecov", "ci/jenkins"}

    summary = await env.run(
        acts.fetch_ci_failure, FetchCIFailureInput(ctx=run_ctx, spec=s, repo=REPO, status=status, ci_iteration=1)
    )
    assert summary.ok and summary.feedback_ref == "feedback-ci-1.md"
    job = next(j for j in summary.jobs if j.job_id is not None)
    assert job.failing_step == "Run pytest -q" and job.error_lines >= 3
    assert "CI / test @ Run pytest -q" in summary.summary
    feedback = deps.store.read_text(run_ctx, summary.feedback_ref)
    assert "Failing step: `Run pytest -q`" in feedback
    assert "E       assert -1 == 5" in feedback
    assert "FAILED tests/test_mathlib.py::test_add - assert -1 == 5" in feedback
    assert "Coverage dropped" in feedback and "ci/jenkins" in feedback
    assert "untrusted" in feedback.lower()
    assert "2024-01-01T" not in feedback and "##[group]" not in feedback
    # the raw log is kept as an artifact; the signed log URL was fetched without the token
    assert deps.store.exists(run_ctx, job.log_ref)
    assert github_env.blob_requests and all(b["authorization"] is None for b in github_env.blob_requests)


async def test_action_required_is_reported_as_such(deps, run_ctx, workspace, github_env):
    acts, env, s = DeliveryActivities(deps), ActivityEnvironment(), spec()
    head = sh(Path(workspace.path), "rev-parse", "HEAD")
    await push_and_open_pr(acts, run_ctx, workspace, s)
    github_env.script_ci(head, CI.action_required())
    status = await env.run(acts.poll_ci, PollCIInput(ctx=run_ctx, spec=s, repo=REPO, head_sha=head))
    assert status.state == "action_required"
    assert ci_verdict(status, s.ci) == "action_required"
    assert "approval" in status.summary and status.awaiting_approval[0].kind == "workflow_run"


async def test_no_checks_waits_for_the_grace_period_then_applies_the_policy(deps, run_ctx, workspace, github_env):
    acts, env = DeliveryActivities(deps), ActivityEnvironment()
    head = sh(Path(workspace.path), "rev-parse", "HEAD")
    for policy, verdict in (("pass", "passed"), ("fail", "failed")):
        s = spec(ci={"no_checks_policy": policy, "no_checks_grace_seconds": 30})
        early = await env.run(
            acts.poll_ci, PollCIInput(ctx=run_ctx, spec=s, repo=REPO, head_sha=head, elapsed_seconds=5)
        )
        assert early.state == "pending"
        late = await env.run(
            acts.poll_ci, PollCIInput(ctx=run_ctx, spec=s, repo=REPO, head_sha=head, elapsed_seconds=31)
        )
        assert late.state == "no_checks" and ci_verdict(late, s.ci) == verdict


async def test_403_fails_fast_or_warns_by_mode(deps, run_ctx, workspace, github_env: FakeGitHub):
    acts, env = DeliveryActivities(deps), ActivityEnvironment()
    forbidden = {"message": "Resource not accessible by integration", "documentation_url": "https://docs.github.com"}
    inp = CreatePullRequestInput(ctx=run_ctx, spec=spec(), workspace=workspace, repo=REPO, template=template(run_ctx))
    await env.run(acts.push_branch, PushBranchInput(ctx=run_ctx, spec=inp.spec, workspace=workspace, repo=REPO))

    github_env.inject("POST", r"/pulls$", 403, forbidden)
    with pytest.raises(ApplicationError) as caught:
        await env.run(acts.create_pull_request, inp)
    err = caught.value
    assert err.non_retryable and err.type == "delivery_error"
    assert "403" in err.message and "Resource not accessible by integration" in err.message

    github_env.inject("POST", r"/pulls$", 403, forbidden)
    best = inp.model_copy(update={"spec": spec(github_mode="best_effort")})
    result = await env.run(acts.create_pull_request, best)
    assert not result.ok and result.pr is None
    assert "Resource not accessible by integration" in (result.warning or "")
    assert '"type":"delivery_warning"' in (deps.store.run_dir(run_ctx) / "events.jsonl").read_text()

    disabled = inp.model_copy(update={"spec": spec(github_mode="disabled")})
    before = len(github_env.requests)
    assert (await env.run(acts.create_pull_request, disabled)).skipped
    assert len(github_env.requests) == before


async def test_retryable_errors_carry_retry_after(deps, run_ctx, workspace, github_env: FakeGitHub):
    acts, env = DeliveryActivities(deps), ActivityEnvironment()
    head = sh(Path(workspace.path), "rev-parse", "HEAD")
    github_env.inject("GET", r"/check-runs$", 502, {"message": "Server Error"}, {"Retry-After": "3"})
    with pytest.raises(ApplicationError) as caught:
        await env.run(acts.poll_ci, PollCIInput(ctx=run_ctx, spec=spec(), repo=REPO, head_sha=head))
    assert not caught.value.non_retryable and caught.value.type == "github_unavailable"
    assert caught.value.next_retry_delay is not None and caught.value.next_retry_delay.total_seconds() == 3
    github_env.inject(
        "GET",
        r"/check-runs$",
        403,
        {"message": "You have exceeded a secondary rate limit. Please wait."},
        {"retry-after": "42"},
    )
    with pytest.raises(ApplicationError) as caught:
        await env.run(acts.poll_ci, PollCIInput(ctx=run_ctx, spec=spec(), repo=REPO, head_sha=head))
    assert caught.value.type == "github_rate_limited" and caught.value.next_retry_delay.total_seconds() == 42


async def test_wrong_token_is_non_retryable_and_not_echoed(deps, run_ctx, workspace, github_env, monkeypatch):
    monkeypatch.setenv("AGENTGATE_GITHUB_TOKEN", "ghp_wrongwrongwrongwrongwrong")
    acts, env = DeliveryActivities(deps), ActivityEnvironment()
    with pytest.raises(ApplicationError) as caught:
        await env.run(acts.push_branch, PushBranchInput(ctx=run_ctx, spec=spec(), workspace=workspace, repo=REPO))
    assert caught.value.non_retryable and "Bad credentials" in caught.value.message
    assert "ghp_wrong" not in caught.value.message
    # a push the remote rejects (401 from git smart HTTP) is classified as permanent, not retried
    direct = spec(remote_url=github_env.clone_url)
    with pytest.raises(ApplicationError) as caught:
        await env.run(acts.push_branch, PushBranchInput(ctx=run_ctx, spec=direct, workspace=workspace, repo=REPO))
    assert caught.value.non_retryable and caught.value.type == "delivery_error"
    assert "git push" in caught.value.message and "ghp_wrong" not in caught.value.message
    # GITHUB_TOKEN is the fallback variable
    monkeypatch.delenv("AGENTGATE_GITHUB_TOKEN")
    monkeypatch.setenv("GITHUB_TOKEN", github_env.token)
    ok = await env.run(acts.push_branch, PushBranchInput(ctx=run_ctx, spec=direct, workspace=workspace, repo=REPO))
    assert ok.pushed


async def test_token_never_appears_in_artifacts_logs_or_errors(
    deps, run_ctx, workspace, github_env: FakeGitHub, gh_token, caplog, tmp_path
):
    caplog.set_level(logging.DEBUG)
    acts, env, s = DeliveryActivities(deps), ActivityEnvironment(), spec()
    head = sh(Path(workspace.path), "rev-parse", "HEAD")
    # CI output that echoes the token must not carry it into feedback or stored logs
    leaky = github_actions_log([f"echo {gh_token}", gh_token, "E   AssertionError: boom", "FAILED t.py::x - boom"])
    github_env.script_ci(head, CI.red(leaky))
    errors: list[str] = []
    await push_and_open_pr(acts, run_ctx, workspace, s)
    status = await env.run(acts.poll_ci, PollCIInput(ctx=run_ctx, spec=s, repo=REPO, head_sha=head))
    await env.run(
        acts.fetch_ci_failure, FetchCIFailureInput(ctx=run_ctx, spec=s, repo=REPO, status=status, ci_iteration=1)
    )
    for status_code, body in ((502, {"message": "x"}), (403, {"message": f"token {gh_token} lacks scope"})):
        github_env.inject("GET", r"/check-runs$", status_code, body)
        try:
            await env.run(acts.poll_ci, PollCIInput(ctx=run_ctx, spec=s, repo=REPO, head_sha=head))
        except ApplicationError as exc:
            errors.append(f"{exc} {exc.message} {exc.details}")
    github_env.inject("POST", r"/pulls$", 422, {"message": "Validation Failed"})
    commit_file(Path(workspace.path), "x.py", "x = 1\n", "more")
    await env.run(acts.push_branch, PushBranchInput(ctx=run_ctx, spec=s, workspace=workspace, repo=REPO))

    assert len(errors) == 2 and all(gh_token not in e for e in errors)
    assert "***" in errors[1]
    assert scan_for_secret(deps.settings.home_dir, gh_token) == []
    assert scan_for_secret(Path(workspace.path), gh_token) == []
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert gh_token not in logged
    assert "delivery poll_ci failed" in logged  # the failures were logged, just without the token
    ci_logs = [f for f in deps.store.list_files(run_ctx) if f.startswith("ci-1/")]
    assert ci_logs and "***" in deps.store.read_text(run_ctx, ci_logs[0])


async def test_local_delivery_branch_bundle_and_patch(deps, run_ctx, workspace, tmp_path):
    acts, env = DeliveryActivities(deps), ActivityEnvironment()
    source = tmp_path / "source"
    subprocess.run(["git", "clone", "-q", workspace.path, str(source)], check=True)
    ws = workspace.model_copy(update={"source_path": str(source)})
    head = sh(Path(ws.path), "rev-parse", "HEAD")

    branch = await env.run(acts.push_branch, PushBranchInput(ctx=run_ctx, spec=DeliverySpec(), workspace=ws))
    assert branch.pushed and sh(source, "rev-parse", f"refs/heads/{ws.branch}") == head

    bundle = await env.run(
        acts.push_branch, PushBranchInput(ctx=run_ctx, spec=DeliverySpec(local_output="bundle"), workspace=ws)
    )
    path = deps.store.path(run_ctx, bundle.artifact_ref)
    sh(source, "bundle", "verify", "-q", str(path))  # raises unless the bundle applies to the source
    fetched = tmp_path / "from-bundle"
    subprocess.run(["git", "clone", "-q", str(source), str(fetched)], check=True)
    sh(fetched, "fetch", "-q", str(path), f"agentgate-bundle/{bundle.artifact_ref.split('/')[-1][:-7]}:imported")
    assert sh(fetched, "rev-parse", "imported") == head
    assert "agentgate-bundle" not in sh(Path(ws.path), "branch", "--list")

    patch = await env.run(
        acts.push_branch, PushBranchInput(ctx=run_ctx, spec=DeliverySpec(local_output="patch"), workspace=ws)
    )
    text = deps.store.read_text(run_ctx, patch.artifact_ref)
    assert "Subject: [PATCH] agentgate: iteration 1" in text and "+    return a - b" in text
