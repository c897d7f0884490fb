"""Scale-out on one machine: two worker processes with their own host identities and disks, one shared
artifact store, the real Temporal dev server. The worker holding a run's workspace is killed with
SIGKILL in the middle of iteration 2's build; the other worker rebuilds the workspace from the last
checkpoint and finishes the run, and the delivered branch has every completed iteration's commit."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from agentgate import checkpoints, service
from agentgate.config import Settings
from tests.test_workflow import make_order
from tests.workers import WorkerProcess
from workflows.work_order import WorkOrderWorkflow

# A few seconds per iteration; "start N" is on stdout (and in agent-N.stdout.log) as soon as the build runs.
SLOW_AGENT = 'echo "start $AGENTGATE_ITERATION"; sleep 4; echo "line $AGENTGATE_ITERATION" >> progress.txt; echo done'
THREE_LINES = 'test "$(wc -l < progress.txt)" -ge 3'


async def _polled(client, queue: str) -> bool:
    resp = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
        )
    )
    return bool(resp.pollers)


async def _until(predicate, timeout: float, what: str, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(step)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def _git(repo: Path, *args: str) -> str:
    return subprocess.check_output(["git", "-C", str(repo), *args], text=True)


async def test_kill_9_of_the_workspace_host_moves_the_run_to_the_other_worker(dev_env, tmp_path, sample_repo):
    task_queue = f"agentgate-scale-{uuid.uuid4().hex[:8]}"
    artifacts = tmp_path / "artifacts"
    hosts = ("host-a", "host-b")
    procs: dict[str, WorkerProcess] = {}
    try:
        for host in hosts:
            settings = Settings(
                home=tmp_path / f"home-{host}",  # its own disk: workspaces are not shared
                artifact_dir=artifacts,  # the shared volume: artifacts and checkpoints
                temporal_address=dev_env.client.service_client.config.target_host,
                temporal_namespace=dev_env.client.namespace,
                task_queue=task_queue,
                host_id=host,
            )
            procs[host] = WorkerProcess(settings, tmp_path / f"{host}.log")
        for host in hosts:
            queue = f"{task_queue}.host.{host}"
            await _until(lambda q=queue: _polled(dev_env.client, q), 60, f"a poller on {queue}")

        order = make_order(
            sample_repo,
            agent=SLOW_AGENT,
            gate=THREE_LINES,
            max_iterations=5,
            max_wall_clock_seconds=600,
            host_start_timeout_seconds=8,
        )
        order.agent.options["heartbeat_timeout_seconds"] = 6
        handle = await dev_env.client.start_workflow(WorkOrderWorkflow.run, order, id=order.id, task_queue=task_queue)
        run_dir = artifacts / order.id / handle.result_run_id

        async def building_iteration_2():
            log = run_dir / "agent-2.stdout.log"
            return log.exists() and "start 2" in log.read_text()

        await _until(building_iteration_2, 90, "iteration 2's build to start")
        status = await handle.query(WorkOrderWorkflow.status)
        assert status.state == "building" and status.iterations == 2, status
        victim = status.workspace.host_id
        survivor = next(h for h in hosts if h != victim)
        assert status.workspace.task_queue == f"{task_queue}.host.{victim}"
        iteration_1 = status.history[0].snapshot.commit
        procs[victim].kill9()

        outcome = await asyncio.wait_for(handle.result(), timeout=180)
        survivor_log = procs[survivor].tail()
        assert outcome.result == "passed", (outcome.error, outcome.warnings, survivor_log)
        assert outcome.iterations == 3

        # The move is in the status: structured, and as a warning a person reads.
        [move] = outcome.workspace_moves
        assert (move.from_host, move.to_host, move.iteration, move.phase) == (victim, survivor, 2, "build")
        assert move.checkpoint_ref == checkpoints.iteration_ref(outcome.run_id, 1) and move.commit == iteration_1
        assert any(
            f"workspace moved from host {victim} to host {survivor} at iteration 2" in w for w in outcome.warnings
        )
        settings = Settings(home=tmp_path / f"home-{survivor}", artifact_dir=artifacts, task_queue=task_queue)
        current = await service.get_outcome(dev_env.client, settings, order.id)
        assert [m.to_host for m in current.workspace_moves] == [survivor]
        assert outcome.workspace.host_id == survivor
        assert Path(outcome.workspace.path).is_relative_to(tmp_path / f"home-{survivor}")
        assert outcome.history[0].snapshot.commit == iteration_1  # the completed iteration was not redone

        # The delivered branch has every iteration's commit, iteration 1 being the one made on the lost host.
        branch = f"agentgate/{order.id}"
        log = _git(sample_repo, "log", "--format=%H %s", branch).splitlines()
        assert [line.split(" ", 1)[1] for line in log[:3]] == [f"agentgate: iteration {n}" for n in (3, 2, 1)]
        assert [line.split(" ", 1)[0] for line in log[:3]] == [rec.snapshot.commit for rec in reversed(outcome.history)]
        assert log[2].startswith(iteration_1)
        assert _git(sample_repo, "show", f"{branch}:progress.txt").splitlines() == ["line 1", "line 2", "line 3"]

        # Every iteration is a checkpoint in the shared store; the event log records the move.
        refs = await checkpoints.list_iterations(artifacts, order.id, outcome.run_id)
        assert refs == {rec.iteration: rec.snapshot.commit for rec in outcome.history}
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
        moved = [e for e in events if e["type"] == "workspace_moved"]
        assert len(moved) == 1 and (moved[0]["from_host"], moved[0]["to_host"]) == (victim, survivor)
    finally:
        for proc in procs.values():
            proc.stop()


# -- in one process: each of a host's three queues can be served or not, to reach the other paths ----------


class _Host:
    """One host's workers (shared queue, host queue, agent queue), each started and stopped on its own."""

    def __init__(self, client, settings: Settings) -> None:
        from worker import build_workers

        self.settings = settings
        self.shared, self.host, self.agents = build_workers(client, settings)
        self.tasks: dict[str, asyncio.Task] = {}

    def start(self, *names: str) -> None:
        for name in names:
            self.tasks[name] = asyncio.create_task(getattr(self, name).run())

    async def stop(self, *names: str) -> None:
        for name in names or tuple(self.tasks):
            if name in self.tasks:
                await getattr(self, name).shutdown()
                await self.tasks.pop(name)


def _host_settings(tmp_path: Path, host: str, task_queue: str) -> Settings:
    return Settings(
        home=tmp_path / f"home-{host}",
        artifact_dir=tmp_path / "artifacts",
        task_queue=task_queue,
        host_id=host,
        heartbeat_seconds=1,
        agent_grace_seconds=2,
        worker_graceful_shutdown_seconds=5,
    )


async def _activity_events(handle, activity_type: str) -> list[str]:
    """The kinds of history events of one activity type: scheduled, started, completed, timed_out, ..."""
    history = await handle.fetch_history()
    scheduled = {}
    kinds = []
    for event in history.events:
        attrs = event.activity_task_scheduled_event_attributes
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled[event.event_id] = attrs.activity_type.name
            if attrs.activity_type.name == activity_type:
                kinds.append("scheduled")
        for field, kind in (
            ("activity_task_completed_event_attributes", "completed"),
            ("activity_task_timed_out_event_attributes", "timed_out"),
            ("activity_task_failed_event_attributes", "failed"),
        ):
            if event.HasField(field) and scheduled.get(getattr(event, field).scheduled_event_id) == activity_type:
                kinds.append(kind)
    return kinds


async def test_a_busy_host_is_waited_for_not_left(dev_env, tmp_path, sample_repo):
    """The agent queue starts nothing in time (its slots taken) but the host answers the probe: the build waits."""
    task_queue = f"agentgate-busy-{uuid.uuid4().hex[:8]}"
    host = _Host(dev_env.client, _host_settings(tmp_path, "host-a", task_queue))
    host.start("shared", "host")  # no agent slot is free on this host for now
    try:
        order = make_order(sample_repo, agent=SLOW_AGENT.replace("sleep 4", "sleep 1"), gate=THREE_LINES,
                           max_iterations=3, host_start_timeout_seconds=5)  # fmt: skip
        handle = await dev_env.client.start_workflow(WorkOrderWorkflow.run, order, id=order.id, task_queue=task_queue)

        async def probed():
            return "completed" in await _activity_events(handle, "probe_workspace")

        await _until(probed, 60, "the host probe", step=0.5)
        assert "timed_out" in await _activity_events(handle, "run_agent")
        host.start("agents")
        outcome = await asyncio.wait_for(handle.result(), timeout=120)
        assert outcome.result == "passed", outcome.error
        assert outcome.workspace_moves == [] and outcome.workspace.host_id == "host-a"
        assert not any("moved" in w for w in outcome.warnings)
    finally:
        await host.stop()


async def test_a_host_lost_before_the_snapshot_builds_the_iteration_again_elsewhere(dev_env, tmp_path, sample_repo):
    """The build finished, but the worker's host queue is gone before the snapshot: the iteration's work was only on
    that disk, so the workspace is restored on the other host from the base checkpoint and iteration 1 is rebuilt."""
    task_queue = f"agentgate-snap-{uuid.uuid4().hex[:8]}"
    a = _Host(dev_env.client, _host_settings(tmp_path, "host-a", task_queue))
    # Its own connection, as another host has: one client may not hold two workers of the same queue.
    other = await Client.connect(
        dev_env.client.service_client.config.target_host,
        namespace=dev_env.client.namespace,
        data_converter=pydantic_data_converter,
    )
    b = _Host(other, _host_settings(tmp_path, "host-b", task_queue))
    a.start("shared", "host", "agents")
    try:
        order = make_order(sample_repo, agent=SLOW_AGENT, gate=THREE_LINES, max_iterations=5,
                           host_start_timeout_seconds=5)  # fmt: skip
        handle = await dev_env.client.start_workflow(WorkOrderWorkflow.run, order, id=order.id, task_queue=task_queue)
        log = tmp_path / "artifacts" / order.id / handle.result_run_id / "agent-1.stdout.log"

        async def building():
            return log.exists() and "start 1" in log.read_text()

        await _until(building, 60, "iteration 1's build")
        await a.stop("shared", "host")  # host-a's agent finishes the build; nobody will take its snapshot
        b.start("shared", "host", "agents")
        outcome = await asyncio.wait_for(handle.result(), timeout=120)
        assert outcome.result == "passed", (outcome.error, outcome.warnings)
        [move] = outcome.workspace_moves
        assert (move.from_host, move.to_host, move.iteration, move.phase) == ("host-a", "host-b", 1, "snapshot")
        assert move.checkpoint_ref == checkpoints.base_ref(outcome.run_id)
        assert move.commit == outcome.workspace.base_commit
        assert outcome.iterations == 3 and outcome.workspace.host_id == "host-b"
        assert [p.phase for p in outcome.history[0].phases][:3] == ["build", "snapshot", "build"]
        branch = f"agentgate/{order.id}"
        assert _git(sample_repo, "show", f"{branch}:progress.txt").splitlines() == ["line 1", "line 2", "line 3"]
    finally:
        await a.stop()
        await b.stop()
