"""Durable checkpoints (agentgate/checkpoints.py) with real git, the workspace activities that write and
read them, a whole run on Temporal leaving one checkpoint per iteration, and `agentgate rewind`
over the real API and CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities.deps import ActivityDeps
from activities.workspace import WorkspaceActivities, run_branch
from agentgate import checkpoints, git, service
from agentgate.config import Settings
from agentgate.ids import new_work_order_id
from agentgate.models import ProbeInput, RestoreInput, RunContext, WorkspaceInfo
from tests.conftest import running_api, running_worker
from tests.test_workflow import make_order, run
from workflows.work_order import WorkOrderWorkflow

AGENTGATE = [sys.executable, "-m", "agentgate.cli"]
# One line per iteration in progress.txt; the gate wants `target` lines (never reached with a high target).
COUNTING_AGENT = 'echo "line $AGENTGATE_ITERATION" >> progress.txt; echo "iteration $AGENTGATE_ITERATION done"'


def _git(cwd: Path, *args: str) -> str:
    return subprocess.check_output(["git", "-C", str(cwd), *args], text=True, env={**os.environ, **git.git_env()})


async def _repo_with_commits(path: Path, n: int) -> list[str]:
    path.mkdir(parents=True)
    await git.git(path, "init", "-q", "-b", "main")
    commits = []
    for i in range(1, n + 1):
        (path / "f.txt").write_text(f"version {i}\n")
        commits.append(await git.commit_all(path, f"commit {i}"))
    return commits


async def test_save_resolve_list_and_materialize(tmp_path: Path):
    runs = tmp_path / "runs"
    ws = tmp_path / "ws"
    c1, c2 = await _repo_with_commits(ws, 2)
    wo = new_work_order_id()

    # HEAD is c2: saving it as iteration 2 works; claiming it is c1 is refused.
    await _git_checkout(ws, c1)
    assert (
        await checkpoints.save(runs, wo, ws, checkpoints.iteration_ref("run1", 1), c1) == "refs/agentgate/run1/iter-1"
    )
    await _git_checkout(ws, c2)
    await checkpoints.save(runs, wo, ws, checkpoints.iteration_ref("run1", 2), c2)
    with pytest.raises(checkpoints.CheckpointError, match="expected"):
        await checkpoints.save(runs, wo, ws, checkpoints.iteration_ref("run1", 3), c1)

    repo = checkpoints.repository(runs, wo)
    assert repo == runs / "_checkpoints" / f"{wo}.git" and (repo / "HEAD").is_file()
    assert await checkpoints.resolve(runs, wo, "refs/agentgate/run1/iter-2") == c2
    assert await checkpoints.resolve(runs, wo, "refs/agentgate/run1/iter-9") is None
    assert await checkpoints.resolve(runs, "wo_0000000000nothing", "refs/agentgate/run1/iter-1") is None
    # iter-3 was written before the check refused it: list what is there, and it is not c1's claim.
    listed = await checkpoints.list_iterations(runs, wo, "run1")
    assert listed[1] == c1 and listed[2] == c2
    assert await checkpoints.list_iterations(runs, wo, "other-run") == {}

    # A new repository at the checkpoint, on the given branch, with the whole history.
    dest = tmp_path / "restored"
    await checkpoints.materialize(runs, wo, checkpoints.iteration_ref("run1", 1), c1, dest, "agentgate/x")
    assert (dest / "f.txt").read_text() == "version 1\n"
    assert _git(dest, "rev-parse", "HEAD").strip() == c1
    assert _git(dest, "branch", "--show-current").strip() == "agentgate/x"
    with pytest.raises(checkpoints.CheckpointError, match="expected"):
        await checkpoints.materialize(runs, wo, checkpoints.iteration_ref("run1", 1), c2, tmp_path / "r2", "b")
    with pytest.raises(checkpoints.CheckpointError):
        await checkpoints.materialize(
            runs, "wo_0000000000nothing", "refs/agentgate/run1/iter-1", c1, tmp_path / "r3", "b"
        )


async def _git_checkout(ws: Path, commit: str) -> None:
    await git.git(ws, "checkout", "-q", commit)


def test_parse_ref():
    assert checkpoints.parse_ref("refs/agentgate/abc-1/iter-12") == ("abc-1", 12)
    assert checkpoints.parse_ref("refs/agentgate/abc-1/base") == ("abc-1", None)
    for bad in ("refs/heads/main", "refs/agentgate/abc/iter-x", "refs/agentgate/a/b/iter-1"):
        assert checkpoints.parse_ref(bad) is None


async def test_the_agent_cannot_redirect_the_checkpoint_copy(tmp_path: Path):
    """The bare repository fetches from the workspace, so an `insteadOf` planted in the workspace's config is moot."""
    runs, ws = tmp_path / "runs", tmp_path / "ws"
    [commit] = await _repo_with_commits(ws, 1)
    wo = new_work_order_id()
    decoy = tmp_path / "decoy.git"
    await git.git(tmp_path, "init", "-q", "--bare", str(decoy))
    repo = checkpoints.repository(runs, wo)
    await git.git(ws, "config", f"url.{decoy}.insteadOf", str(repo))
    await checkpoints.save(runs, wo, ws, checkpoints.iteration_ref("r", 1), commit)
    assert await checkpoints.resolve(runs, wo, "refs/agentgate/r/iter-1") == commit
    assert _git(decoy, "for-each-ref").strip() == ""


async def test_restore_and_probe_activities(tmp_path: Path):
    """restore_workspace rebuilds a workspace from a checkpoint on "another host"; probe_workspace tells a held
    workspace from a missing one."""
    shared = tmp_path / "artifacts"
    host_a = Settings(home=tmp_path / "a", artifact_dir=shared, host_id="host-a", task_queue="tq")
    host_b = Settings(home=tmp_path / "b", artifact_dir=shared, host_id="host-b", task_queue="tq")
    ctx = RunContext(work_order_id=new_work_order_id(), run_id="run-1")
    ws = host_a.workspaces_dir / ctx.work_order_id / ctx.run_id
    base, c1 = await _repo_with_commits(ws, 2)
    await git.git(ws, "checkout", "-q", "-B", run_branch(ctx.work_order_id))
    ref = await checkpoints.save(shared, ctx.work_order_id, ws, checkpoints.iteration_ref(ctx.run_id, 1), c1)
    lost = WorkspaceInfo(
        path=str(ws),
        base_commit=base,
        branch=run_branch(ctx.work_order_id),
        task_queue=host_a.host_task_queue,
        agent_task_queue=host_a.agent_task_queue,
        source_path="/src/repo",
        host_id="host-a",
        checkpoint_ref="refs/agentgate/run-1/base",
    )

    acts_b = WorkspaceActivities(ActivityDeps.from_settings(host_b))
    env = ActivityEnvironment()
    info = await env.run(
        acts_b.restore_workspace,
        RestoreInput(ctx=ctx, workspace=lost, checkpoint_ref=ref, commit=c1, iteration=2, reason="test"),
    )
    assert (
        info.host_id == "host-b" and info.task_queue == "tq.host.host-b" and info.agent_task_queue.endswith(".agents")
    )
    assert Path(info.path) == host_b.workspaces_dir / ctx.work_order_id / ctx.run_id
    assert (info.base_commit, info.branch, info.source_path) == (base, lost.branch, "/src/repo")
    assert _git(Path(info.path), "rev-parse", "HEAD").strip() == c1
    assert _git(Path(info.path), "branch", "--show-current").strip() == lost.branch
    assert await env.run(acts_b.probe_workspace, ProbeInput(ctx=ctx, workspace=info)) is True
    gone = info.model_copy(update={"path": str(tmp_path / "nowhere")})
    assert await env.run(acts_b.probe_workspace, ProbeInput(ctx=ctx, workspace=gone)) is False

    events = (shared / ctx.work_order_id / ctx.run_id / "events.jsonl").read_text()
    assert '"workspace_moved"' in events and '"host-a"' in events and '"host-b"' in events


async def test_every_iteration_is_checkpointed(skip_env, settings, sample_repo):
    order = make_order(sample_repo)
    outcome = await run(skip_env, settings, order)
    assert outcome.result == "passed", outcome.error
    assert outcome.workspace.host_id == settings.host_id
    refs = await checkpoints.list_iterations(settings.runs_dir, order.id, outcome.run_id)
    assert refs == {rec.iteration: rec.snapshot.commit for rec in outcome.history} and len(refs) == 2
    for rec in outcome.history:
        assert rec.snapshot.checkpoint_ref == checkpoints.iteration_ref(outcome.run_id, rec.iteration)
    assert outcome.workspace.checkpoint_ref == checkpoints.base_ref(outcome.run_id)
    base = await checkpoints.resolve(settings.runs_dir, order.id, outcome.workspace.checkpoint_ref)
    assert base == outcome.workspace.base_commit
    assert outcome.workspace_moves == []


def _cli_env(http, settings) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGATE_")}
    env.update(AGENTGATE_API_URL=str(http.base_url).rstrip("/"), AGENTGATE_HOME=str(settings.home), COLUMNS="200")
    return env


async def _cli(env: dict, *args: str) -> tuple[int, str, str]:
    """The CLI as a subprocess, awaited so the API served by this event loop keeps answering."""
    proc = await asyncio.create_subprocess_exec(
        *AGENTGATE, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode, stdout.decode(), stderr.decode()


async def _wait_terminal(http, wo_id: str, run_id: str | None = None, timeout: float = 120) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            data = (await http.get(f"/api/v1/work-orders/{wo_id}")).json()
            if data["status"] in ("succeeded", "failed", "canceled") and (run_id is None or data["run_id"] == run_id):
                return data
            await asyncio.sleep(0.2)


async def test_rewind_starts_a_new_run_from_a_checkpoint(dev_env, settings, sample_repo):
    gate = 'test "$(wc -l < progress.txt)" -ge 9'  # never reached: every run uses all its iterations
    order = make_order(sample_repo, agent=COUNTING_AGENT, gate=gate, max_iterations=3)
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        first = await dev_env.client.execute_workflow(
            WorkOrderWorkflow.run, order, id=order.id, task_queue=settings.task_queue
        )
        assert first.result == "failed_verification" and first.iterations == 3
        commits = {rec.iteration: rec.snapshot.commit for rec in first.history}

        # Bad input, each a clear error naming the field.
        missing = await http.post("/api/v1/work-orders/wo_0000000000000nothing/rewind", json={"to_iteration": 1})
        assert missing.status_code == 404, missing.text
        beyond = await http.post(f"/api/v1/work-orders/{order.id}/rewind", json={"to_iteration": 7})
        assert beyond.status_code == 422 and beyond.json()["error"]["details"][0]["field"] == "body.to_iteration"
        assert "1, 2, 3" in beyond.json()["error"]["message"]
        zero = await http.post(f"/api/v1/work-orders/{order.id}/rewind", json={"to_iteration": 0})
        assert zero.status_code == 422 and "to_iteration" in zero.json()["error"]["message"]
        bad_agent = await http.post(f"/api/v1/work-orders/{order.id}/rewind", json={"to_iteration": 1, "agent": "x"})
        assert bad_agent.status_code == 422 and "body.agent" in bad_agent.json()["error"]["message"]
        for run_id in ("00000000-0000-0000-0000-000000000000", "not-a-run"):
            no_run = await http.post(
                f"/api/v1/work-orders/{order.id}/rewind", json={"to_iteration": 1, "run_id": run_id}
            )
            assert no_run.status_code == 422 and "body.run_id" in no_run.json()["error"]["message"], no_run.text
        no_cmd = await http.post(
            f"/api/v1/work-orders/{order.id}/rewind", json={"to_iteration": 1, "agent": "command"}
        )  # the same driver as before: kept as it was
        assert no_cmd.status_code == 201, no_cmd.text
        await _wait_terminal(http, order.id, no_cmd.json()["run_id"])

        # The CLI, with another agent: the new run's iteration 1 builds on the first run's iteration 2.
        env = _cli_env(http, settings)
        other_agent = 'echo "rewound $AGENTGATE_ITERATION" >> progress.txt'
        code, out, err = await _cli(
            env, "rewind", order.id, "--to-iteration", "2", "--run", first.run_id, "--agent", "command",
            "--agent-command", other_agent, "--json",
        )  # fmt: skip
        assert code == 0, err
        started = json.loads(out)
        assert started["resume_from"]["iteration"] == 2 and started["resume_from"]["commit"] == commits[2]
        assert started["run_id"] not in (first.run_id, no_cmd.json()["run_id"])
        rewound = await _wait_terminal(http, order.id, started["run_id"])
        assert rewound["workspace"]["base_commit"] == commits[2]
        assert rewound["iterations"] == 3
        new_order = await service.original_work_order(dev_env.client, order.id)
        assert new_order.agent.command == other_agent and new_order.resume_from.run_id == first.run_id

        # The delivered branch: the new run's commits on top of the first run's iterations 1 and 2.
        branch = f"agentgate/{order.id}"
        subjects = _git(sample_repo, "log", "--format=%H %s", branch).splitlines()
        shas = [line.split(" ", 1)[0] for line in subjects]
        assert shas[3:5] == [commits[2], commits[1]]
        assert [line.split(" ", 1)[1] for line in subjects[:3]] == [f"agentgate: iteration {i}" for i in (3, 2, 1)]
        progress = _git(sample_repo, "show", f"{branch}:progress.txt").splitlines()
        assert progress == ["line 1", "line 2", "rewound 1", "rewound 2", "rewound 3"]

        # All runs stay in history.
        runs = (await http.get(f"/api/v1/work-orders/{order.id}/runs")).json()["items"]
        assert {first.run_id, no_cmd.json()["run_id"], started["run_id"]} <= {r["run_id"] for r in runs}

        # The CLI's bad input: one line, exit 2; an iteration without checkpoint: 2 as well.
        code, _, err = await _cli(env, "rewind", order.id, "--to-iteration", "0")
        assert code == 2 and "--to-iteration" in err
        code, _, err = await _cli(env, "rewind", order.id, "--to-iteration", "8")
        assert code == 2 and "to_iteration" in err

        # While a run of the order is going: 409 (CLI exit 1).
        slow = 'echo start; sleep 30; echo "slow" >> progress.txt'
        busy = await http.post(
            f"/api/v1/work-orders/{order.id}/rewind",
            json={"to_iteration": 1, "agent": {"driver": "command", "command": slow}},
        )
        assert busy.status_code == 201, busy.text
        again = await http.post(f"/api/v1/work-orders/{order.id}/rewind", json={"to_iteration": 1})
        assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
        code, _, err = await _cli(env, "rewind", order.id, "--to-iteration", "1")
        assert code == 1 and "still running" in err
        assert (await http.delete(f"/api/v1/work-orders/{order.id}")).status_code == 202
        await _wait_terminal(http, order.id, busy.json()["run_id"])


def test_status_shows_a_workspace_move():
    from agentgate.cli import _compact, _describe

    move = {
        "iteration": 2,
        "phase": "build",
        "from_host": "host-a",
        "to_host": "host-b",
        "checkpoint_ref": "refs/agentgate/r/iter-1",
    }
    outcome = {"id": "wo_x", "status": "running", "state": "building", "iterations": 2, "workspace_moves": [move]}
    text = _describe(_compact(outcome), Settings())
    assert "moved       from host host-a to host host-b at iteration 2 (build), from refs/agentgate/r/iter-1" in text
