"""The work-order workflow on real Temporal servers, with real git and real processes."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from agentgate.artifacts import ArtifactStore
from agentgate.demo.sample_repo import GATE_COMMAND, TASK_PROMPT
from agentgate.ids import new_work_order_id
from agentgate.models import RunContext, WorkOrder
from tests.conftest import DEMO_AGENT, running_worker
from workflows.work_order import WorkOrderWorkflow


def make_order(repo: Path, *, agent: str = DEMO_AGENT, gate: str = GATE_COMMAND, **kw) -> WorkOrder:
    return WorkOrder(
        id=new_work_order_id(),
        created_at=datetime.now(UTC),
        task_prompt=TASK_PROMPT,
        workspace_source={"type": "local", "path": str(repo)},
        agent={"driver": "command", "command": agent},
        gates=[gate],
        **kw,
    )


async def run(env, settings, order: WorkOrder):
    async with running_worker(env, settings):
        return await env.client.execute_workflow(
            WorkOrderWorkflow.run, order, id=order.id, task_queue=settings.task_queue
        )


async def test_demo_run_passes_after_two_iterations(skip_env, settings, sample_repo):
    order = make_order(sample_repo)
    head_before = subprocess.check_output(["git", "-C", str(sample_repo), "rev-parse", "HEAD"], text=True)
    outcome = await run(skip_env, settings, order)

    assert outcome.result == "passed", outcome.error
    assert outcome.iterations == 2
    first, second = outcome.history
    assert first.verification is not None and not first.verification.passed
    assert second.verification is not None and second.verification.passed
    assert first.feedback is not None

    # The branch with one commit per iteration was pushed into the source repository,
    # whose checked-out branch and working tree were not touched.
    branch = f"agentgate/{order.id}"
    log = subprocess.check_output(["git", "-C", str(sample_repo), "log", "--format=%s", branch], text=True)
    assert log.splitlines()[:2] == ["agentgate: iteration 2", "agentgate: iteration 1"]
    assert subprocess.check_output(["git", "-C", str(sample_repo), "rev-parse", "HEAD"], text=True) == head_before
    assert 'NotImplementedError("add")' in (sample_repo / "mathlib.py").read_text()

    # Every artifact exists and parses; iteration 1's verification kept the gate's real output.
    store = ArtifactStore(settings.runs_dir)
    ctx = RunContext(work_order_id=order.id, run_id=outcome.run_id)
    for name in [
        "run.json",
        "agent-1.json",
        "agent-2.json",
        "verification-1.json",
        "verification-2.json",
        "iteration-1.json",
        "iteration-2.json",
    ]:
        json.loads(store.read_text(ctx, name))
    assert "implemented add" in store.read_text(ctx, "agent-1.stdout.log")
    assert "+    return a + b" in store.read_text(ctx, "patch-1.diff")
    v1 = store.read_json(ctx, "verification-1.json")
    assert v1["passed"] is False
    gate_log = store.read_text(ctx, v1["gates"][0]["output_file"])
    assert "test_multiply" in gate_log and "NotImplementedError: multiply" in gate_log
    assert "test_multiply" in store.read_text(ctx, "feedback-1.md")
    run_json = store.read_json(ctx, "run.json")
    assert run_json["result"] == "passed" and run_json["iterations"] == 2
    events = [json.loads(x) for x in store.read_text(ctx, "events.jsonl").splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "run_completed"


async def test_gate_that_never_passes_fails_verification(skip_env, settings, sample_repo):
    order = make_order(sample_repo, gate="echo 'still broken' >&2; exit 1", max_iterations=3)
    outcome = await run(skip_env, settings, order)
    assert outcome.result == "failed_verification"
    assert outcome.state == "failed"
    assert outcome.iterations == 3
    assert outcome.build_error is not None and outcome.build_error.type == "test_failed"
    assert all(rec.verification and not rec.verification.passed for rec in outcome.history)


async def test_wall_clock_limit_ends_failed_timeout(dev_env, settings, sample_repo):
    order = make_order(
        sample_repo, agent="echo working; echo half-done > notes.txt; sleep 30", max_wall_clock_seconds=3
    )
    outcome = await run(dev_env, settings, order)
    assert outcome.result == "failed_timeout"
    assert outcome.state == "failed"
    assert outcome.partial is True
    store = ArtifactStore(settings.runs_dir)
    ctx = RunContext(work_order_id=order.id, run_id=outcome.run_id)
    assert store.read_json(ctx, "run.json")["result"] == "failed_timeout"
    assert "working" in store.read_text(ctx, "agent-1.stdout.log")
    # Salvage: what the agent wrote before the limit is a commit on the delivered branch.
    shown = subprocess.check_output(
        ["git", "-C", str(sample_repo), "show", f"agentgate/{order.id}:notes.txt"], text=True
    )
    assert shown == "half-done\n"
    assert (
        outcome.delivery.commit
        == subprocess.check_output(
            ["git", "-C", str(sample_repo), "rev-parse", f"agentgate/{order.id}"], text=True
        ).strip()
    )


async def test_agent_crash_ends_failed_build(skip_env, settings, sample_repo):
    order = make_order(sample_repo, agent="echo 'boom' >&2; exit 7")
    outcome = await run(skip_env, settings, order)
    assert outcome.result == "failed_build"
    assert outcome.build_error.type == "agent_crash"
    assert outcome.build_error.exit_code == 7
    assert "boom" in outcome.build_error.stderr_tail


async def test_not_a_repository_is_a_workspace_error(skip_env, settings, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    order = make_order(plain)
    outcome = await run(skip_env, settings, order)
    assert outcome.result == "failed_error"
    assert outcome.build_error.type == "workspace_error"
    assert "not a git repository" in outcome.build_error.message
