"""Long fault tests, run by `make chaos` (marker `chaos`; the default `pytest` run leaves them out).

- the Temporal dev server (our own, on its SQLite file) is killed and started again mid-run;
- 200 submissions in a burst at capacity 4: all finish, none lost or doubled, admitted in priority order;
- a storm of 50 cancels and 5 kills at once: no agent process is left.

The kill of a worker during a build and the move to another host are tests/test_worker_loss.py and
tests/test_scale_out.py; the quick faults (full disk, corrupt store, API restart under SSE, a small
storm) are tests/test_faults.py, whose helpers these reuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from agentgate import queue
from agentgate.config import Settings
from agentgate.embedded import port_is_free, temporal_command, wait_for_port
from agentgate.temporal_client import connect
from tests.conftest import free_port, running_api, running_worker
from tests.test_faults import WAIT, cancel_and_kill_storm, settings_for, until
from tests.test_workflow import make_order
from tests.workers import WorkerProcess
from workflows.admission import ADMITTED_SIGNAL, SlotGrant
from workflows.work_order import WorkOrderWorkflow

pytestmark = pytest.mark.chaos


# -- the Temporal server restarts mid-run ------------------------------------------------------------------


class OwnTemporal:
    """`temporal server start-dev` exactly as the embedded stack runs it (SQLite file, WAL), on free ports."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings, self.log_path = settings, log
        self.proc: subprocess.Popen | None = None

    async def start(self) -> None:
        for port in (self.settings.temporal_port, self.settings.ui_port):
            await until(lambda p=port: port_is_free(p), f"port {port} free again", timeout=30)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 - started once, returns at once
                temporal_command(self.settings), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        await wait_for_port(self.settings.temporal_port, 60)

    def kill(self) -> None:
        """SIGKILL to its process group: no clean shutdown, the SQLite file is all that is kept."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


SLOW_AGENT = 'echo "start $AGENTGATE_ITERATION"; sleep 3; echo "line $AGENTGATE_ITERATION" >> progress.txt'
THREE_LINES = 'test "$(wc -l < progress.txt)" -ge 3'


async def _connect_when_up(settings: Settings) -> Client:
    async def attempt():
        try:
            return await connect(settings)
        except RuntimeError:
            return None

    return await until(attempt, "a client connection", step=0.5)


async def test_the_run_completes_across_a_temporal_server_restart(tmp_path, sample_repo):
    settings = Settings(
        home=tmp_path / "home",
        temporal_port=free_port(),
        ui_port=free_port(),
        task_queue=f"agentgate-chaos-{uuid.uuid4().hex[:8]}",
        host_id=f"host-{uuid.uuid4().hex[:6]}",
    )
    settings = settings.model_copy(update={"temporal_address": f"127.0.0.1:{settings.temporal_port}"})
    settings.home_dir.mkdir(parents=True)
    server = OwnTemporal(settings, tmp_path / "temporal.log")
    worker = WorkerProcess(settings, tmp_path / "worker.log", start=False)
    try:
        await server.start()
        client = await _connect_when_up(settings)
        worker.start()
        order = make_order(sample_repo, agent=SLOW_AGENT, gate=THREE_LINES, max_iterations=5)
        handle = await client.start_workflow(WorkOrderWorkflow.run, order, id=order.id, task_queue=settings.task_queue)
        run_dir = settings.runs_dir / order.id / handle.result_run_id
        log2 = run_dir / "agent-2.stdout.log"
        await until(lambda: log2.exists() and "start 2" in log2.read_text(), "iteration 2's build", timeout=WAIT * 2)

        server.kill()  # in the middle of iteration 2's agent
        await asyncio.sleep(3)
        await server.start()  # the same SQLite file
        client = await _connect_when_up(settings)
        outcome = await asyncio.wait_for(
            client.get_workflow_handle_for(WorkOrderWorkflow.run, order.id).result(), timeout=WAIT * 2
        )
        tail = worker.tail()
        assert worker.running(), f"the worker died with the server:\n{tail}"
        assert outcome.result == "passed", (outcome.error, tail)
        assert outcome.iterations == 3 and outcome.run_id == handle.result_run_id
        # Nothing completed was lost or done twice: one commit per iteration on the delivered branch.
        log = subprocess.check_output(
            ["git", "-C", str(sample_repo), "log", "--format=%s", f"agentgate/{order.id}"], text=True
        ).splitlines()
        assert log[:3] == [f"agentgate: iteration {n}" for n in (3, 2, 1)]
        assert not log[3].startswith("agentgate: iteration")
        progress = subprocess.check_output(
            ["git", "-C", str(sample_repo), "show", f"agentgate/{order.id}:progress.txt"], text=True
        )
        assert progress.splitlines() == ["line 1", "line 2", "line 3"]
    finally:
        worker.stop()
        server.kill()


# -- a burst of 200 at capacity 4 -------------------------------------------------------------------------


async def _grant_number(client: Client, wo_id: str) -> int:
    """The admission workflow's grant number for this run, from the `admitted` signal in its own history."""
    history = await client.get_workflow_handle(wo_id).fetch_history()
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            attrs = event.workflow_execution_signaled_event_attributes
            if attrs.signal_name == ADMITTED_SIGNAL:
                [grant] = await client.data_converter.decode(attrs.input.payloads, [SlotGrant])
                return grant.grant
    raise AssertionError(f"{wo_id} was never admitted")


async def test_a_burst_of_200_at_capacity_4_all_finish_once_in_priority_order(dev_env, tmp_path, sample_repo):
    burst, capacity = 200, 4
    settings = settings_for(dev_env, tmp_path, capacity=capacity, max_concurrent_agents=capacity)
    starts, go = tmp_path / "starts.log", tmp_path / "go"
    # Each agent writes its id once per start: a run started twice, or never, shows here.
    agent = f'echo "$AGENTGATE_WORK_ORDER_ID" >> {starts}'
    blocker = f"{agent}; while [ ! -e {go} ]; do sleep 0.05; done"

    def body(command: str, priority: int) -> dict:
        return {
            "task_prompt": "A burst.",
            "workspace_source": {"type": "local", "path": str(sample_repo)},
            "agent": {"driver": "command", "command": command},
            "gates": ["true"],
            "max_iterations": 1,
            "priority": priority,
        }

    rng = random.Random(8)
    priorities = [rng.randint(1, 5) for _ in range(burst)]
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        http.timeout = httpx.Timeout(120)
        blockers = []
        for _ in range(capacity):  # every slot taken, so the whole burst waits and its order is the policy's
            created = await http.post("/api/v1/work-orders", json=body(blocker, 5))
            assert created.status_code == 201, created.text
            blockers.append(created.json()["id"])
        await until(lambda: starts.exists() and len(starts.read_text().split()) == capacity, "the blockers run")

        answers = await asyncio.gather(*(http.post("/api/v1/work-orders", json=body(agent, p)) for p in priorities))
        assert [a.status_code for a in answers] == [201] * burst, [a.text for a in answers if a.status_code != 201]
        ids = [a.json()["id"] for a in answers]
        assert len(set(ids)) == burst
        priority_of = dict(zip(ids, priorities, strict=True))
        await until(
            lambda: _queued(dev_env.client, settings, burst), f"all {burst} in the queue", timeout=WAIT, step=0.5
        )
        predicted = [e.work_order_id for e in (await queue.snapshot(dev_env.client, settings)).waiting]
        assert sorted(predicted) == sorted(ids)
        go.touch()  # the blockers finish; the burst runs four at a time

        # Waited for through Temporal (long polls): polling the API would query every run through the worker.
        handles = [dev_env.client.get_workflow_handle_for(WorkOrderWorkflow.run, wo) for wo in ids + blockers]
        await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), timeout=WAIT * 8)
        finals = await asyncio.gather(*(http.get(f"/api/v1/work-orders/{wo}") for wo in ids))
        results = [f.json() for f in finals]
        assert [(r["status"], r["result"], r["iterations"]) for r in results] == [("succeeded", "passed", 1)] * burst

    started = starts.read_text().split()
    assert sorted(set(started)) == sorted(ids + blockers), "an order never started, or a stranger did"
    # Activities run at least once: an agent may start again only as a retried attempt of its build
    # (e.g. a heartbeat missed on this loaded machine), which the run's history then shows. Never otherwise.
    for wo in sorted({wo for wo in started if started.count(wo) > 1}):
        assert await _build_retried(dev_env.client, wo), f"{wo} started {started.count(wo)} times without a retry"
    # Admitted exactly in the predicted order, which is priority first (1 = most urgent), then arrival.
    grants = {wo: await _grant_number(dev_env.client, wo) for wo in ids}
    admitted = sorted(ids, key=grants.__getitem__)
    assert admitted == predicted
    assert [priority_of[wo] for wo in admitted] == sorted(priorities)


async def _build_retried(client: Client, wo_id: str) -> bool:
    history = await client.get_workflow_handle(wo_id).fetch_history()
    scheduled = {}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            attrs = event.activity_task_started_event_attributes
            if attrs.attempt > 1 and scheduled.get(attrs.scheduled_event_id) == "run_agent":
                return True
    return False


async def _queued(client: Client, settings: Settings, count: int) -> bool:
    with contextlib.suppress(queue.QueueUnavailable):
        return (await queue.stats(client, settings)).queued >= count
    return False


# -- a storm of 50 cancels and 5 kills ------------------------------------------------------------------


async def test_a_storm_of_50_cancels_and_5_kills_leaves_no_agent_process(dev_env, tmp_path, sample_repo):
    await cancel_and_kill_storm(dev_env, tmp_path, sample_repo, cancel=50, kill=5)
