"""`agentgate doctor`: storage validation plus orphans, on the real dev server and the real disk."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from agentgate import service
from agentgate.artifacts import QUARANTINE_DIR
from agentgate.checkpoints import repository as checkpoint_repository
from agentgate.config import Settings
from agentgate.demo.sample_repo import create_sample_repo
from agentgate.doctor import EXIT_CLEAN, EXIT_PROBLEMS, EXIT_UNREACHABLE, run_doctor
from agentgate.ids import new_work_order_id
from tests.conftest import free_port, running_worker
from tests.test_workflow import make_order

REPO_ROOT = Path(__file__).resolve().parents[1]
FAKE_RUN = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


def _cli_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGATE_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        AGENTGATE_HOME=str(settings.home),
        AGENTGATE_TEMPORAL_ADDRESS=settings.temporal_address,
        AGENTGATE_TASK_QUEUE=settings.task_queue,
    )
    return env


def _cli(settings: Settings, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "agentgate.cli", *args],
        env=_cli_env(settings),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _gone(client, wo: str, run_id: str, timeout: float = 20) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        try:
            await client.get_workflow_handle(wo, run_id=run_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return True
            raise
        await asyncio.sleep(0.2)
    return False


async def _settled(client, query: str, expect: int, timeout: float = 20) -> None:
    """Visibility is eventually consistent: wait until `query` lists `expect` executions."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        n = len([wf async for wf in client.list_workflows(query)])
        if n == expect or asyncio.get_running_loop().time() > deadline:
            rows = [(wf.id, wf.run_id, wf.status, wf.workflow_type) async for wf in client.list_workflows(query)]
            assert n == expect, f"{query}: {n} listed, expected {expect}: {rows}"
            return
        await asyncio.sleep(0.2)


async def test_doctor_reports_then_fixes_every_kind_of_orphan(dev_env, settings, tmp_path):
    client = dev_env.client
    settings = settings.model_copy(update={"temporal_address": client.service_client.config.target_host})
    repo = create_sample_repo(tmp_path / "repo")

    # A: a healthy finished run (execution + artifacts + workspace), then one of its records corrupted.
    good = make_order(repo, agent="true", gate="true")
    async with running_worker(dev_env, settings):
        handle, _ = await service.start_work_order(client, settings, good)
        outcome = await handle.result()
    assert outcome.result == "passed"
    good_run = settings.runs_dir / good.id / outcome.run_id
    (good_run / "iteration-1.json").write_text('{"iteration": 1,,}')

    # B: a closed execution that never wrote artifacts (terminated before any worker saw it).
    lost = make_order(repo, agent="true", gate="true")
    lost_handle, _ = await service.start_work_order(client, settings, lost)
    await lost_handle.terminate(reason="test: never ran")
    lost_run = (await lost_handle.describe()).run_id

    # C and D: folders of work orders Temporal has never heard of.
    ghost_artifacts = settings.runs_dir / new_work_order_id() / FAKE_RUN
    ghost_artifacts.mkdir(parents=True)
    (ghost_artifacts / "run.json").write_text('{"status": "succeeded", "ended_at": "2020-01-01T00:00:00Z"}')
    ghost_workspace = settings.workspaces_dir / new_work_order_id() / FAKE_RUN
    ghost_workspace.mkdir(parents=True)
    (ghost_workspace / "mathlib.py").write_text("x = 1\n")
    os.chmod(ghost_workspace, 0o555)  # read-only, as git objects and some agents leave things
    ghost_home = ghost_workspace.parent / f"{FAKE_RUN}.home"  # its run's private sandbox HOME
    (ghost_home / ".claude").mkdir(parents=True)
    ghost_checkpoints = checkpoint_repository(settings.runs_dir, new_work_order_id())
    ghost_checkpoints.mkdir(parents=True)
    (ghost_checkpoints / "HEAD").write_text("ref: refs/heads/main\n")
    assert checkpoint_repository(settings.runs_dir, good.id).is_dir()  # the real run's: never an orphan

    # E: an open (queued: no worker) order: even its unknown run folders must not be touched.
    open_order = make_order(repo, agent="true", gate="true")
    open_handle, _ = await service.start_work_order(client, settings, open_order)
    open_artifacts = settings.runs_dir / open_order.id / FAKE_RUN
    open_artifacts.mkdir(parents=True)
    (open_artifacts / "run.json").write_text("{}")
    open_workspace = settings.workspaces_dir / open_order.id / FAKE_RUN
    open_workspace.mkdir(parents=True)
    try:
        await _settled(client, f'WorkflowType="WorkOrderWorkflow" AND TaskQueue="{settings.task_queue}"', 3)

        report = await run_doctor(settings, client=client)
        kinds = sorted((f.kind, f.work_order_id) for f in report.findings)
        assert kinds == sorted(
            [
                ("corrupt_json", None),
                ("orphan_execution", lost.id),
                ("orphan_artifacts", ghost_artifacts.parent.name),
                ("orphan_workspace", ghost_workspace.parent.name),
                ("orphan_workspace", ghost_workspace.parent.name),
                ("orphan_checkpoint", ghost_checkpoints.name.removesuffix(".git")),
            ]
        ), report.findings
        assert [f.path for f in report.findings if f.kind == "corrupt_json"] == [str(good_run / "iteration-1.json")]
        assert report.exit_code == EXIT_PROBLEMS and report.temporal["reachable"]
        assert report.temporal["executions"] == 3
        [ghost] = [f for f in report.findings if f.kind == "orphan_artifacts"]
        assert "run.json: succeeded, ended 2020-01-01" in ghost.detail and "aged out of the retention" in ghost.detail
        assert ghost_artifacts.exists() and ghost_workspace.exists() and (good_run / "iteration-1.json").exists()
        [home] = [f for f in report.findings if f.path == str(ghost_home)]
        assert home.run_id == FAKE_RUN and "private sandbox HOME" in home.detail

        # The CLI says the same, as JSON, with exit code 1.
        cli = _cli(settings, "doctor", "--json", cwd=tmp_path)
        assert cli.returncode == EXIT_PROBLEMS, cli.stderr
        data = json.loads(cli.stdout)
        assert data["problems"] == 6 and data["exit_code"] == EXIT_PROBLEMS

        fixed = await run_doctor(settings, client=client, fix=True)
        assert all(f.fixed for f in fixed.findings), fixed.findings
        assert fixed.exit_code == EXIT_CLEAN
        assert not ghost_artifacts.parent.exists() and not ghost_workspace.parent.exists()
        assert not ghost_checkpoints.exists() and checkpoint_repository(settings.runs_dir, good.id).is_dir()
        assert not (good_run / "iteration-1.json").exists() and (good_run / "run.json").exists()
        assert list((settings.runs_dir / QUARANTINE_DIR / good.id / outcome.run_id).glob("iteration-1.json.*.reason"))
        assert await _gone(client, lost.id, lost_run)
        # Never touched: the healthy run's execution and files, and everything of the open order.
        assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
        assert (settings.workspaces_dir / good.id / outcome.run_id).is_dir()
        assert open_artifacts.is_dir() and open_workspace.is_dir()
        assert (await open_handle.describe()).status == WorkflowExecutionStatus.RUNNING

        await _settled(client, f'WorkflowType="WorkOrderWorkflow" AND TaskQueue="{settings.task_queue}"', 2)
        clean = _cli(settings, "doctor", cwd=tmp_path)
        assert clean.returncode == EXIT_CLEAN, clean.stdout + clean.stderr
        assert "no problems found" in clean.stdout
    finally:
        await open_handle.terminate(reason="test cleanup")


async def test_doctor_without_temporal_still_checks_storage_and_exits_3(tmp_path):
    settings = Settings(home=tmp_path / "home", temporal_address=f"127.0.0.1:{free_port()}")
    bad = settings.runs_dir / new_work_order_id() / FAKE_RUN
    bad.mkdir(parents=True)
    (bad / "run.json").write_text("{")
    report = await run_doctor(settings, connect_timeout=5)
    assert report.exit_code == EXIT_UNREACHABLE and not report.temporal["reachable"]
    assert [f.kind for f in report.findings] == ["corrupt_json"]

    cli = _cli(settings, "doctor", cwd=tmp_path)
    assert cli.returncode == EXIT_UNREACHABLE, cli.stdout + cli.stderr
    assert "unreachable" in cli.stdout
