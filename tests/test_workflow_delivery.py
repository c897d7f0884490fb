"""GitHub delivery through the real WorkOrderWorkflow: real Temporal, real git, the fake GitHub over real HTTP."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.util._once import Once
from temporalio.client import Client

from agentgate.artifacts import ArtifactStore
from agentgate.models import RunContext, RunOutcome, WorkOrder
from agentgate.observability import tracing
from tests.fakes import delivery_fixtures as fx
from tests.fakes.delivery_fixtures import scan_for_secret
from tests.fakes.github_server import CI, FakeGitHub, github_actions_log
from tests.fakes.otlp_receiver import OtlpReceiver
from tests.test_workflow import make_order, run
from worker import build_workers
from workflows.work_order import WorkOrderWorkflow

gh_token = fx.gh_token

RED_LOG = github_actions_log(
    [
        "E       NotImplementedError: subtract",
        "FAILED tests/test_ci_only.py::test_subtract - NotImplementedError: subtract",
        "1 failed, 2 passed in 0.02s",
    ],
    step="pytest -q",
)


@pytest.fixture
def bare_remote(tmp_path: Path, sample_repo: Path) -> Path:
    """The GitHub side of the sample repo: its `main` is the PR base."""
    bare = tmp_path / "remote" / "demo.git"
    bare.parent.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "-C", str(sample_repo), "push", "-q", str(bare), "main"], check=True)
    return bare


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch, gh_token: str, bare_remote: Path):
    fake = FakeGitHub(gh_token, owner="octo", repo="demo", default_branch="main", bare_repo=bare_remote).start()
    monkeypatch.setenv("AGENTGATE_GITHUB_TOKEN", gh_token)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.setenv("AGENTGATE_GITHUB_API_URL", fake.base_url)
    try:
        yield fake
    finally:
        fake.stop()


def script_by_push_order(fake: FakeGitHub, *per_push: CI) -> list[str]:
    """CI for commits in the order CI is first asked about them (= the order they were pushed and polled).

    The commits do not exist before the run, so the fake decides when it first sees each head sha.
    Returns the list of shas seen, in order.
    """
    seen: list[str] = []
    original = fake._ci_for

    def ci_for(sha: str, advance: bool) -> CI:
        if sha not in fake.ci and sha not in seen:
            seen.append(sha)
            index = min(len(seen), len(per_push)) - 1
            fake.script_ci(sha, per_push[index])
        return original(sha, advance)

    fake._ci_for = ci_for  # type: ignore[method-assign]
    return seen


def pr_order(repo: Path, **delivery) -> WorkOrder:
    spec = {"mode": "github-pr", "owner": "octo", "repo": "demo", **delivery}
    spec["ci"] = {"poll_interval_seconds": 1, "timeout_seconds": 600, **delivery.get("ci", {})}
    return make_order(repo, delivery=spec)


def events_of(settings, outcome: RunOutcome) -> list[dict]:
    store = ArtifactStore(settings.runs_dir)
    ctx = RunContext(work_order_id=outcome.work_order_id, run_id=outcome.run_id)
    return [json.loads(x) for x in store.read_text(ctx, "events.jsonl").splitlines()]


async def test_ci_red_then_ci_feedback_iteration_then_green_and_ready(
    skip_env, settings, sample_repo, github: FakeGitHub, bare_remote: Path, gh_token: str
):
    seen = script_by_push_order(github, CI.red(RED_LOG, step="Run pytest -q"), CI.green())
    order = pr_order(sample_repo, ci={"no_checks_grace_seconds": 600})
    outcome = await run(skip_env, settings, order)

    assert outcome.result == "passed", (outcome.error, outcome.warnings)
    assert outcome.status == "succeeded"
    # iterations 1-2 are the gate loop, 3 is the CI fix round
    assert outcome.iterations == 3
    delivery = outcome.delivery
    assert delivery is not None
    assert delivery.pr_number == 1 and delivery.pr_url == "https://github.com/octo/demo/pull/1"
    assert delivery.ci_state == "passed" and delivery.ci_rounds == 1
    assert delivery.pushed and delivery.commit == outcome.history[2].snapshot.commit

    # CI was red for iteration 2's pushed commit and green for iteration 3's
    assert seen == [outcome.history[1].snapshot.commit, outcome.history[2].snapshot.commit]
    branch = f"agentgate/{order.id}"
    head = subprocess.check_output(["git", "-C", str(bare_remote), "rev-parse", f"refs/heads/{branch}"], text=True)
    assert head.strip() == outcome.history[2].snapshot.commit

    # one PR, created as draft, marked ready through the GraphQL mutation once CI passed
    assert [r.status for r in github.calls("POST", r"/pulls$")] == [201]
    marks = github.calls("POST", r"^/graphql$")
    assert len(marks) == 1 and "markPullRequestReadyForReview" in marks[0].json["query"]
    assert github.pulls[1]["draft"] is False

    # the CI feedback file reached the extra iteration's agent
    store = ArtifactStore(settings.runs_dir)
    ctx = RunContext(work_order_id=order.id, run_id=outcome.run_id)
    feedback = store.read_text(ctx, "feedback-ci-1.md")
    assert "test_subtract" in feedback and "Run pytest -q" in feedback
    assert "characters of feedback" in store.read_text(ctx, "agent-3.stdout.log")
    fetched = [e for e in events_of(settings, outcome) if e.get("type") == "ci_failure_fetched"]
    assert len(fetched) == 1 and fetched[0]["feedback"] == "feedback-ci-1.md", fetched

    assert scan_for_secret(settings.home_dir, gh_token) == []


async def test_no_checks_with_policy_pass_succeeds_and_marks_ready(skip_env, settings, sample_repo, github):
    order = pr_order(sample_repo, ci={"no_checks_policy": "pass", "no_checks_grace_seconds": 2})
    outcome = await run(skip_env, settings, order)
    assert outcome.result == "passed" and outcome.status == "succeeded", (outcome.error, outcome.warnings)
    assert outcome.iterations == 2
    assert outcome.delivery.ci_state == "passed" and outcome.delivery.ci_rounds == 0
    assert github.pulls[outcome.delivery.pr_number]["draft"] is False


async def test_action_required_succeeds_with_a_warning_and_the_pr_stays_draft(skip_env, settings, sample_repo, github):
    script_by_push_order(github, CI.action_required())
    outcome = await run(skip_env, settings, pr_order(sample_repo, ci={"no_checks_grace_seconds": 600}))
    assert outcome.result == "passed" and outcome.status == "succeeded", (outcome.error, outcome.warnings)
    assert outcome.delivery.ci_state == "action_required"
    assert any("approval" in w for w in outcome.warnings), outcome.warnings
    assert github.pulls[outcome.delivery.pr_number]["draft"] is True
    assert github.calls("POST", r"^/graphql$") == []


async def test_a_502_with_retry_after_on_pr_creation_is_retried_by_temporal(skip_env, settings, sample_repo, github):
    """A transient GitHub error is an activity retry (honouring Retry-After), not a failed run or a second PR."""
    script_by_push_order(github, CI.green())
    github.inject("POST", r"/repos/octo/demo/pulls$", 502, {"message": "Bad Gateway"}, {"Retry-After": "1"})
    outcome = await run(skip_env, settings, pr_order(sample_repo))
    assert outcome.result == "passed", (outcome.error, outcome.warnings)
    assert [r.status for r in github.calls("POST", r"/pulls$")] == [502, 201]
    assert outcome.delivery.pr_number == 1 and outcome.delivery.ci_state == "passed"
    assert len(github.pulls) == 1


async def test_pr_403_only_warns_in_best_effort(skip_env, settings, sample_repo, github):
    github.inject("POST", r"/pulls$", 403, {"message": "Resource not accessible by integration"})
    outcome = await run(skip_env, settings, pr_order(sample_repo, github_mode="best_effort"))
    assert outcome.result == "passed", (outcome.error, outcome.warnings)
    assert any("Resource not accessible by integration" in w for w in outcome.warnings), outcome.warnings
    assert outcome.delivery.pr_number is None and outcome.delivery.pushed
    assert github.pulls == {}


async def test_pr_403_fails_fast(skip_env, settings, sample_repo, github):
    github.inject("POST", r"/pulls$", 403, {"message": "Resource not accessible by integration"})
    outcome = await run(skip_env, settings, pr_order(sample_repo))
    assert outcome.result == "failed_error" and outcome.status == "failed"
    assert outcome.build_error is not None and outcome.build_error.type == "delivery_error"
    assert "Resource not accessible by integration" in outcome.build_error.message
    assert len(github.calls("POST", r"/pulls$")) == 1  # non-retryable: one attempt
    assert outcome.delivery.pr_number is None


@pytest.fixture
def fresh_global_tracing(monkeypatch: pytest.MonkeyPatch):
    """Let temporal_interceptors() install a process-global provider, and put everything back afterwards."""
    monkeypatch.setattr(tracing, "_setup", None)
    monkeypatch.setattr(tracing, "_active", None)
    monkeypatch.setattr(tracing, "_configured", False)
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(otel_trace, "_TRACER_PROVIDER", None)


async def test_one_trace_covers_the_two_iteration_run(
    skip_env, settings, sample_repo, monkeypatch, fresh_global_tracing
):
    receiver = OtlpReceiver().start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "agentgate-e2e")
        interceptors = tracing.temporal_interceptors("agentgate-test")
        assert interceptors, "tracing should be on"
        client = Client(**{**skip_env.client.config(), "interceptors": interceptors})
        order = make_order(sample_repo)
        try:
            workers = build_workers(client, settings)
            async with workers[0], workers[1], workers[2]:
                outcome = await client.execute_workflow(
                    WorkOrderWorkflow.run, order, id=order.id, task_queue=settings.task_queue
                )
        finally:
            tracing.shutdown_tracing()
        assert outcome.result == "passed" and outcome.iterations == 2

        wanted = {"StartWorkflow:WorkOrderWorkflow", "RunWorkflow:WorkOrderWorkflow", "RunActivity:finalize_run"}
        assert receiver.wait_for(lambda spans: wanted <= {s.name for s in spans}), [s.name for s in receiver.spans]
        spans = receiver.spans
        start = receiver.by_name("StartWorkflow:WorkOrderWorkflow")
        mine = [s for s in spans if s.trace_id == start.trace_id]
        names = [s.name for s in mine]
        assert start.parent_span_id == ""
        for activity_name, count in [("run_agent", 2), ("snapshot", 2), ("verify", 2), ("feedback", 1)]:
            assert names.count(f"RunActivity:{activity_name}") == count, (activity_name, sorted(names))
        run_wf = receiver.by_name("RunWorkflow:WorkOrderWorkflow")
        assert run_wf.parent_span_id == start.span_id
        # every activity ran under a StartActivity span of this workflow (TracingInterceptor's nesting)
        by_id = {s.span_id: s for s in mine}
        for act in (s for s in mine if s.name.startswith("RunActivity:")):
            assert by_id[act.parent_span_id].name == "StartActivity:" + act.name.split(":", 1)[1], act
        assert {s.service_name for s in mine} == {"agentgate-e2e"}
        # every span of the run is in this trace
        assert {s.trace_id for s in spans} == {start.trace_id}
    finally:
        receiver.stop()


async def test_ci_poll_403_fails_fast_with_a_delivery_error(skip_env, settings, sample_repo, github):
    github.inject("GET", r"/check-runs$", 403, {"message": "Resource not accessible by integration"}, times=100)
    outcome = await run(skip_env, settings, pr_order(sample_repo))
    assert outcome.result == "failed_error" and outcome.status == "failed", outcome
    assert outcome.build_error is not None and outcome.build_error.type == "delivery_error"
    assert outcome.delivery.pr_number == 1


async def test_ci_logs_unavailable_in_best_effort_fail_the_run_as_ci_failed(skip_env, settings, sample_repo, github):
    script_by_push_order(github, CI.red(RED_LOG))
    # listing the failed run's jobs is refused: best effort swallows it, so there is no feedback file
    github.inject("GET", r"/runs/\d+/jobs$", 403, {"message": "Resource not accessible by integration"}, times=100)
    order = pr_order(sample_repo, github_mode="best_effort", ci={"no_checks_grace_seconds": 600})
    outcome = await run(skip_env, settings, order)
    assert outcome.status == "failed" and outcome.result == "failed_verification", outcome
    assert outcome.build_error is not None and outcome.build_error.type == "ci_failed"
    assert outcome.delivery.ci_state == "failed" and outcome.iterations == 2
    assert any("Resource not accessible by integration" in w for w in outcome.warnings), outcome.warnings
