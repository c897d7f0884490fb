"""The global queue (workflows/admission.py) on the real dev server, with real agents, the real API over HTTP.

The agents here are small shell programs: each appends its work-order id to `starts.log` the
moment it starts, then waits until the test creates `go/<its id>`. So the test decides when a
slot turns over (one at a time), and the order of `starts.log` is the order in which agents
really started — which the positions reported by the API must have predicted.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker

from activities.deps import ActivityDeps
from activities.records import RecordActivities
from agentgate import queue
from agentgate.config import Settings
from agentgate.models import RunOutcome
from tests.conftest import running_api, running_worker
from worker import WORKFLOWS, activity_functions
from workflows.admission import (
    AdmissionState,
    AdmissionWorkflow,
    EnqueueRequest,
    QueueEntry,
    admission_order,
    estimate_wait_seconds,
)

WAIT = 90.0  # generous deadlines for a loaded 2-core machine; a test fails only when the event never happens


def queue_settings(tmp_path: Path, **overrides) -> Settings:
    values = {
        "home": tmp_path / "home",
        "task_queue": f"agentgate-q-{uuid.uuid4().hex[:8]}",
        "host_id": f"host-{uuid.uuid4().hex[:6]}",
        "agent_grace_seconds": 2,
        "heartbeat_seconds": 1,
        "capacity": 1,
        "max_concurrent_agents": 4,  # the per-host guard is wider: the global capacity is what limits
        "sandbox_default_provider": "none",  # trusted local use: agents meet the test in host files (Agents)
    }
    return Settings(**(values | overrides))


class Agents:
    """Agents that record their start and hold their slot until released by the test."""

    def __init__(self, root: Path) -> None:
        self.log = root / "starts.log"
        self.go = root / "go"
        self.go.mkdir(parents=True)
        self.command = (
            f'echo "$AGENTGATE_WORK_ORDER_ID" >> {self.log}; '
            f'while [ ! -e {self.go}/"$AGENTGATE_WORK_ORDER_ID" ]; do sleep 0.05; done'
        )

    def started(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def release(self, wo_id: str) -> None:
        (self.go / wo_id).touch()

    async def wait_started(self, count: int) -> list[str]:
        await until(lambda: len(self.started()) >= count, f"{count} agents started; got {self.started()}")
        return self.started()


async def until(predicate, what: str, timeout: float = WAIT):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.1)


def body(repo: Path, agents: Agents, **overrides) -> dict:
    data = {
        "task_prompt": "Hold a slot until the test says go.",
        "workspace_source": {"type": "local", "path": str(repo)},
        "agent": {"driver": "command", "command": agents.command},
        "gates": ["true"],
        "max_iterations": 1,
    }
    return data | overrides


async def submit(http, data: dict) -> dict:
    response = await http.post("/api/v1/work-orders", json=data)
    assert response.status_code == 201, response.text
    return response.json()


async def position(http, wo_id: str) -> dict:
    response = await http.get(f"/api/v1/work-orders/{wo_id}/position")
    assert response.status_code == 200, response.text
    return response.json()


async def stats(http) -> dict:
    response = await http.get("/api/v1/queue/stats")
    assert response.status_code == 200, response.text
    return response.json()


async def final(http, wo_id: str) -> dict:
    async def done():
        data = (await http.get(f"/api/v1/work-orders/{wo_id}")).json()
        return data if data["status"] in ("succeeded", "failed", "canceled") else None

    return await until(done, f"{wo_id} finished")


# -- the key test --------------------------------------------------------------------------------


async def test_positions_after_a_burst_predict_the_start_order_exactly(dev_env, tmp_path, sample_repo):
    settings = queue_settings(tmp_path, capacity=2)
    agents = Agents(tmp_path)
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        # Two long orders take both slots, so the whole burst queues behind them.
        blockers = [(await submit(http, body(sample_repo, agents, priority=5)))["id"] for _ in range(2)]
        await agents.wait_started(2)

        priorities = [3, 1, 5, 2, 3, 1, 4, 2, 5, 3, 1, 4]
        ids: list[str] = []
        for p in priorities:
            created = await submit(http, body(sample_repo, agents, priority=p))
            ids.append(created["id"])
            # The submit answer is the real position at that moment: its rank among those queued so far.
            rank = sorted(range(len(ids)), key=lambda i: (priorities[i], i)).index(len(ids) - 1) + 1
            assert created["position"] == rank, (p, created)

        reported = {wo: (await position(http, wo))["position"] for wo in ids}
        assert sorted(reported.values()) == list(range(1, 13))
        predicted = sorted(ids, key=lambda wo: reported[wo])
        assert predicted == [ids[i] for i in sorted(range(12), key=lambda i: (priorities[i], i))]
        current = await stats(http)
        assert (current["capacity"], current["running"], current["queued"]) == (2, 2, 12)
        assert current["by_priority"] == {"1": 3, "2": 2, "3": 3, "4": 2, "5": 2}

        # Turn the slots over one at a time: each release admits exactly the next order.
        holding = list(blockers)
        while len(agents.started()) < 2 + len(ids):
            count = len(agents.started())
            agents.release(holding.pop(0))
            started = await agents.wait_started(count + 1)
            holding.append(started[count])
            assert (await stats(http))["running"] <= 2
        for wo in holding:
            agents.release(wo)

        assert sorted(agents.started()[:2]) == sorted(blockers)
        assert agents.started()[2:] == predicted
        for wo in ids:
            assert (await final(http, wo))["status"] in ("succeeded", "failed")
        await until(lambda: _drained(http), "the queue drained")
        assert (await stats(http))["average_hold_seconds"] is not None


async def _drained(http) -> bool:
    current = await stats(http)
    return current["queued"] == 0 and current["running"] == 0


# -- cancel, capacity, fairness, max queue time, kill, reconcile --------------------------------------


async def test_a_canceled_queued_order_leaves_the_queue_at_once(dev_env, tmp_path, sample_repo):
    settings = queue_settings(tmp_path)
    agents = Agents(tmp_path)
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        blocker = (await submit(http, body(sample_repo, agents)))["id"]
        await agents.wait_started(1)
        first = await submit(http, body(sample_repo, agents))
        second = await submit(http, body(sample_repo, agents))
        assert (first["position"], second["position"]) == (1, 2)

        assert (await http.delete(f"/api/v1/work-orders/{first['id']}")).status_code == 202
        # It leaves while the blocker still holds the only slot: not when its turn would have come.
        await until(lambda: _position_is(http, second["id"], 1), "the second order moved up")
        assert (await position(http, first["id"]))["position"] is None
        assert (await stats(http))["queued"] == 1
        done = await final(http, first["id"])
        assert done["status"] == "canceled" and done["build_error"]["phase"] == "queue"
        assert agents.started() == [blocker]

        agents.release(blocker)
        await agents.wait_started(2)
        agents.release(second["id"])
        assert agents.started() == [blocker, second["id"]]
        await final(http, second["id"])


async def test_a_cancel_absorbed_by_a_finishing_activity_still_cancels_the_queued_order(dev_env, tmp_path, sample_repo):
    """A cancel that arrives while `record_run_started` is finishing is absorbed by that activity's result
    (Temporal returns the result of an activity that completed despite the cancel request); the run
    must still see the request before it waits for, or uses, a slot. The cancel here goes straight to
    Temporal, so the API's own withdraw plays no part."""
    settings = queue_settings(tmp_path)
    agents = Agents(tmp_path)
    deps = ActivityDeps.from_settings(settings)
    real = RecordActivities(deps)
    entered, go_on = asyncio.Event(), asyncio.Event()

    @activity.defn(name="record_run_started")
    async def held_record_run_started(outcome: RunOutcome) -> None:  # the real one, held until the cancel is in
        entered.set()
        await go_on.wait()
        await real.record_run_started(outcome)

    acts = activity_functions(deps)
    held = [fn for fn in acts if getattr(fn, "__name__", "") != "record_run_started"] + [held_record_run_started]
    shared = Worker(dev_env.client, task_queue=settings.task_queue, workflows=WORKFLOWS, activities=held)
    host = Worker(dev_env.client, task_queue=settings.host_task_queue, activities=acts)
    agent_worker = Worker(dev_env.client, task_queue=settings.agent_task_queue, activities=acts)
    async with shared, host, agent_worker, running_api(dev_env, settings) as http:
        order = await submit(http, body(sample_repo, agents))
        assert order["position"] == 0  # the API enqueued it and the free slot is already its
        await asyncio.wait_for(entered.wait(), WAIT)
        handle = dev_env.client.get_workflow_handle(order["id"])
        await handle.cancel()

        async def cancel_reached_the_activity() -> bool:
            kinds = [e.event_type async for e in handle.fetch_history_events()]
            return EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED in kinds

        await until(cancel_reached_the_activity, "the run asked to cancel record_run_started")
        go_on.set()  # the activity completes anyway: its result, not a cancellation, reaches the run

        done = await final(http, order["id"])
        assert done["status"] == "canceled" and done["build_error"]["phase"] == "queue"
        assert agents.started() == []
        await until(lambda: _drained(http), "the slot was given back")


async def _position_is(http, wo_id: str, expected: int | None) -> bool:
    return (await position(http, wo_id))["position"] == expected


async def test_raising_the_capacity_at_run_time_admits_more(dev_env, tmp_path, sample_repo):
    settings = queue_settings(tmp_path)
    agents = Agents(tmp_path)
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        blocker = (await submit(http, body(sample_repo, agents)))["id"]
        await agents.wait_started(1)
        waiting = await submit(http, body(sample_repo, agents))
        assert waiting["position"] == 1

        changed = await http.put("/api/v1/queue/capacity", json={"capacity": 2})
        assert changed.status_code == 200, changed.text
        assert changed.json()["capacity"] == 2
        assert await agents.wait_started(2) == [blocker, waiting["id"]]  # while the blocker still runs
        current = await stats(http)
        assert (current["capacity"], current["running"], current["queued"]) == (2, 2, 0)

        for bad in (0, -1, "many", 10_001):
            refused = await http.put("/api/v1/queue/capacity", json={"capacity": bad})
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["details"][0]["field"] == "body.capacity"

        # The CLI talks to the same API.
        env = {**os.environ, "AGENTGATE_API_URL": str(http.base_url)}
        code, out, _ = await cli(env, "queue", "capacity", "3", "--json")
        assert code == 0 and json.loads(out)["capacity"] == 3
        code, out, _ = await cli(env, "queue", "stats", "--json")
        assert code == 0 and json.loads(out)["capacity"] == 3 and json.loads(out)["running"] == 2
        code, _, err = await cli(env, "queue", "capacity", "0")
        assert code == 2 and "capacity must be from 1 to 10000, got 0" in err and len(err.strip().splitlines()) == 1
        code, out, _ = await cli(env, "queue", "position", waiting["id"], "--json")
        assert code == 0 and json.loads(out)["position"] == 0  # holds a slot
        code, _, err = await cli(env, "queue", "position", "wo_0000000000nothere")
        assert code == 2 and "does not exist" in err

        agents.release(blocker)
        agents.release(waiting["id"])
        await final(http, waiting["id"])


async def cli(env: dict, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentgate.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_a_fairness_key_cannot_starve_the_others(dev_env, tmp_path, sample_repo):
    settings = queue_settings(tmp_path)
    agents = Agents(tmp_path)
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        blocker = (await submit(http, body(sample_repo, agents)))["id"]
        await agents.wait_started(1)
        a = [(await submit(http, body(sample_repo, agents, fairness_key="tenant-a")))["id"] for _ in range(4)]
        b = [(await submit(http, body(sample_repo, agents, fairness_key="tenant-b")))["id"] for _ in range(2)]

        # Same priority: the keys take turns, so tenant-b does not wait behind all of tenant-a's orders.
        expected = [a[0], b[0], a[1], b[1], a[2], a[3]]
        assert [(await position(http, wo))["position"] for wo in expected] == [1, 2, 3, 4, 5, 6]

        holding = blocker
        for n in range(len(expected)):
            agents.release(holding)
            holding = (await agents.wait_started(n + 2))[n + 1]
        agents.release(holding)
        assert agents.started()[1:] == expected
        await final(http, expected[-1])


async def test_max_queue_time_ends_the_order_classified(dev_env, tmp_path, sample_repo):
    settings = queue_settings(tmp_path)
    agents = Agents(tmp_path)
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        blocker = (await submit(http, body(sample_repo, agents)))["id"]
        await agents.wait_started(1)
        impatient = await submit(http, body(sample_repo, agents, max_queue_seconds=1.5))
        assert impatient["position"] == 1

        done = await final(http, impatient["id"])
        assert done["status"] == "failed" and done["result"] == "failed_timeout"
        assert done["build_error"]["type"] == "queue_timeout" and done["build_error"]["phase"] == "queue"
        assert "max_queue_seconds" in done["error"]
        assert (await stats(http))["queued"] == 0
        assert agents.started() == [blocker]
        agents.release(blocker)
        await final(http, blocker)

        bad = await http.post("/api/v1/work-orders", json=body(sample_repo, agents, max_queue_seconds=0))
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "body.max_queue_seconds"


async def test_kill_releases_the_slot_at_once(dev_env, tmp_path, sample_repo):
    # A reconcile period of an hour: only the kill route can free the slot within this test.
    settings = queue_settings(tmp_path, queue_reconcile_seconds=3600)
    agents = Agents(tmp_path)
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        victim = (await submit(http, body(sample_repo, agents)))["id"]
        await agents.wait_started(1)
        waiting = await submit(http, body(sample_repo, agents))
        assert waiting["position"] == 1

        killed = await http.post(f"/api/v1/work-orders/{victim}/kill", json={"reason": "stuck"})
        assert killed.status_code == 202
        assert await agents.wait_started(2) == [victim, waiting["id"]]
        current = await stats(http)
        assert (current["running"], current["queued"]) == (1, 0)
        agents.release(waiting["id"])
        await final(http, waiting["id"])


async def test_a_run_terminated_behind_the_apis_back_is_reconciled(dev_env, tmp_path, sample_repo):
    settings = queue_settings(tmp_path, queue_reconcile_seconds=1)
    agents = Agents(tmp_path)
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        victim = (await submit(http, body(sample_repo, agents)))["id"]
        await agents.wait_started(1)
        waiting = await submit(http, body(sample_repo, agents))
        # Terminated with the Temporal client directly (as `temporal workflow terminate` would): nobody
        # releases the slot, so the queue's periodic reconcile must find the closed run.
        await dev_env.client.get_workflow_handle(victim).terminate(reason="operator, outside AgentGate")
        assert await agents.wait_started(2) == [victim, waiting["id"]]
        assert (await stats(http))["reconciled_total"] >= 1
        agents.release(waiting["id"])
        await final(http, waiting["id"])


# -- endpoints -------------------------------------------------------------------------------------


async def test_stats_health_and_position_endpoints(dev_env, tmp_path, sample_repo):
    settings = queue_settings(tmp_path, capacity=1)
    agents = Agents(tmp_path)
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        empty = await stats(http)  # nothing submitted yet: no queue workflow, the configured capacity
        assert (empty["queued"], empty["running"], empty["capacity"]) == (0, 0, 1)

        holder = (await submit(http, body(sample_repo, agents)))["id"]
        await agents.wait_started(1)
        waiter = (await submit(http, body(sample_repo, agents, priority=2)))["id"]
        current = await stats(http)
        assert (current["queued"], current["running"], current["capacity"]) == (1, 1, 1)
        assert current["by_priority"]["2"] == 1 and current["oldest_wait_seconds"] >= 0

        where = await position(http, waiter)
        assert (where["position"], where["ahead"], where["queue_state"], where["status"]) == (1, 0, "waiting", "queued")
        assert where["estimated_wait_seconds"] is None  # no slot was released yet: no average to go by
        assert (await position(http, holder))["position"] == 0
        missing = await http.get("/api/v1/work-orders/wo_0000000000nothere/position")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

        report = await http.get("/api/v1/queue/health")
        assert report.status_code == 200, report.text
        assert report.json()["status"] == "healthy" and report.json()["checks"]["workers"]["ok"]
        ready = (await http.get("/health/ready")).json()
        assert ready["checks"]["worker_polling"]["ok"] is True

        agents.release(holder)
        await final(http, holder)
        agents.release(waiter)
        await final(http, waiter)
        done = await position(http, waiter)
        assert done["position"] is None and done["queue_state"] == "absent" and done["status"] == "succeeded"
        after = await stats(http)
        assert after["average_hold_seconds"] is not None and after["admitted_total"] == 2

    # The same API with no worker polling its task queue: unhealthy, 503, and the reasons say why.
    lonely = queue_settings(tmp_path / "lonely")
    async with running_api(dev_env, lonely) as http:
        report = await http.get("/api/v1/queue/health")
        assert report.status_code == 503
        data = report.json()
        assert data["status"] == "unhealthy"
        assert any("no worker is polling" in r for r in data["reasons"])
        assert any("admission workflow" in r for r in data["reasons"])
        code, out, _ = await cli({**os.environ, "AGENTGATE_API_URL": str(http.base_url)}, "queue", "health", "--json")
        assert code == 3 and json.loads(out)["status"] == "unhealthy"


async def test_the_queue_continues_as_new_with_its_state(dev_env, tmp_path, sample_repo):
    settings = queue_settings(tmp_path)
    agents = Agents(tmp_path)
    client = dev_env.client
    async with running_worker(dev_env, settings), running_api(dev_env, settings) as http:
        # A queue that continues-as-new after a few dozen events, started before any order.
        await client.start_workflow(
            AdmissionWorkflow.run, AdmissionState(capacity=1, max_history_events=40),
            id=settings.admission_workflow_id, task_queue=settings.task_queue,
        )  # fmt: skip
        holder = (await submit(http, body(sample_repo, agents)))["id"]
        await agents.wait_started(1)
        first_run = (await client.get_workflow_handle(settings.admission_workflow_id).describe()).run_id
        # Entries of runs that do not exist: they wait behind the holder (each update grows the history).
        ghosts = [f"wo_ghost{n:06d}" for n in range(12)]
        for n, ghost in enumerate(ghosts):
            req = EnqueueRequest(work_order_id=ghost, run_id=str(uuid.uuid4()), priority=1 + n % 5)
            update = client.execute_update_with_start_workflow(
                AdmissionWorkflow.enqueue, req, start_workflow_operation=queue.start_operation(settings)
            )
            assert (await asyncio.wait_for(update, WAIT)).state == "waiting"  # an answer even across the CAN

        async def continued() -> bool:
            return (await client.get_workflow_handle(settings.admission_workflow_id).describe()).run_id != first_run

        await until(continued, "the queue continued as new")
        current = await queue.stats(client, settings)
        assert current.generation > 1 and (current.running, current.queued) == (1, 12)  # ... with its state
        assert (await queue.standing(client, settings, holder)).state == "admitted"

        # Releasing the holder grants the ghosts in turn; their `admitted` signal fails, so each slot
        # passes on at once and the queue drains instead of leaking slots to runs that are gone.
        agents.release(holder)
        await final(http, holder)
        await until(lambda: _drained(http), "the queue drained")

    # Both runs' histories (the one that continued as new, the current one) replay on the current code.
    for run_id in (first_run, None):
        history = await client.get_workflow_handle(settings.admission_workflow_id, run_id=run_id).fetch_history()
        assert (await _admission_replayer().replay_workflow(history)).replay_failure is None


# -- replay of recorded queue histories ------------------------------------------------------------

ADMISSION_HISTORIES = Path(__file__).parent / "fixtures" / "admission_histories"


def _admission_replayer() -> Replayer:
    return Replayer(workflows=[AdmissionWorkflow], data_converter=pydantic_data_converter)


@pytest.mark.parametrize("path", sorted(ADMISSION_HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_recorded_admission_history_replays(path: Path):
    """A change to workflows/admission.py that would break queues in flight fails here (guard it with
    `workflow.patched()`); record a new history with `python -m tests.test_queue record`."""
    data = json.loads(path.read_text())
    history = WorkflowHistory.from_json(data["workflow_id"], data["history"])
    result = await _admission_replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure!r}"


def test_there_is_a_recorded_admission_history():
    assert list(ADMISSION_HISTORIES.glob("*.json")), "record one with: .venv/bin/python -m tests.test_queue record"


async def _record_admission_history(target: Path) -> None:
    """A queue's life on a dev server: waiting, priorities, fairness, a cancel, a capacity change,
    grants to a run that is gone, reconcile rounds, releases."""
    import tempfile

    from temporalio.testing import WorkflowEnvironment

    from agentgate import search_attributes as sa
    from agentgate.demo.sample_repo import create_sample_repo
    from tests.conftest import _binary

    tmp = Path(tempfile.mkdtemp())
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_binary("temporal"), data_converter=pydantic_data_converter, search_attributes=sa.ALL
    )
    try:
        settings = queue_settings(tmp, queue_reconcile_seconds=1)
        agents, repo = Agents(tmp / "agents"), create_sample_repo(tmp / "repo")
        async with running_worker(env, settings), running_api(env, settings) as http:
            holder = (await submit(http, body(repo, agents)))["id"]
            await agents.wait_started(1)
            a = (await submit(http, body(repo, agents, fairness_key="a")))["id"]
            b = (await submit(http, body(repo, agents, fairness_key="b", priority=1)))["id"]
            canceled = (await submit(http, body(repo, agents, priority=5)))["id"]
            await http.delete(f"/api/v1/work-orders/{canceled}")
            await asyncio.sleep(1.5)  # a reconcile round while the queue is busy
            await http.put("/api/v1/queue/capacity", json={"capacity": 2})
            await agents.wait_started(2)
            for wo in (holder, b):
                agents.release(wo)
            await agents.wait_started(3)
            ghost = EnqueueRequest(work_order_id="wo_ghost0000000", run_id=str(uuid.uuid4()))
            await env.client.execute_update_with_start_workflow(
                AdmissionWorkflow.enqueue, ghost, start_workflow_operation=queue.start_operation(settings)
            )
            agents.release(a)
            for wo in (holder, a, b, canceled):
                await final(http, wo)
            await until(lambda: _drained(http), "the queue drained")
        history = await env.client.get_workflow_handle(settings.admission_workflow_id).fetch_history()
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = {"workflow_id": settings.admission_workflow_id, "history": json.loads(history.to_json())}
        target.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"recorded {target}")
    finally:
        await env.shutdown()


# -- the policy, pure ----------------------------------------------------------------------------


def _entry(n: int, priority: int = 3, key: str | None = None) -> QueueEntry:
    return QueueEntry(work_order_id=f"wo{n}", run_id="r", priority=priority, fairness_key=key, seq=n)


def _ids(entries) -> list[str]:
    return [e.work_order_id for e in entries]


def test_order_is_priority_then_fifo():
    entries = [_entry(1, 3), _entry(2, 1), _entry(3, 5), _entry(4, 1), _entry(5, 3)]
    assert _ids(admission_order(entries, {})) == ["wo2", "wo4", "wo1", "wo5", "wo3"]
    assert _ids(admission_order(list(reversed(entries)), {})) == ["wo2", "wo4", "wo1", "wo5", "wo3"]
    assert _ids(admission_order(entries, {}, limit=2)) == ["wo2", "wo4"]
    assert admission_order([], {}) == []


def test_fairness_keys_take_turns_inside_a_priority():
    entries = [_entry(n, 3, "a") for n in range(1, 5)] + [_entry(n, 3, "b") for n in (5, 6)] + [_entry(7, 3)]
    # Never-served keys go by their oldest order; then the least recently served key goes next.
    assert _ids(admission_order(entries, {})) == ["wo1", "wo5", "wo7", "wo2", "wo6", "wo3", "wo4"]
    # "a" was served last: "b" and the keyless orders go before it.
    assert _ids(admission_order(entries, {"a": 10, "b": 3})) == ["wo7", "wo5", "wo1", "wo6", "wo2", "wo3", "wo4"]
    # Priority still comes first: an urgent order of the busiest key is not held back.
    urgent = [*entries, _entry(8, 1, "a")]
    assert _ids(admission_order(urgent, {"a": 10}))[0] == "wo8"


def test_the_simulated_order_is_the_grant_order():
    """Granting one at a time with the policy (as the workflow does) gives exactly the simulated order."""
    entries = [_entry(n, 1 + (n * 7) % 5, ["x", "y", None][n % 3]) for n in range(1, 40)]
    served = {"x": 2, "y": 1}
    predicted = _ids(admission_order(entries, served))
    waiting, stamps, granted, grants = list(entries), dict(served), [], 10
    while waiting:
        [nxt] = admission_order(waiting, stamps, limit=1)
        waiting.remove(nxt)
        grants += 1
        stamps[nxt.fairness] = grants
        granted.append(nxt.work_order_id)
    assert granted == predicted


def test_wait_estimate():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ago = [now - timedelta(seconds=10), now - timedelta(seconds=40)]  # two holders, 60 s average hold
    assert estimate_wait_seconds(1, 2, ago, 60.0, now) == 20.0  # the older holder frees first
    assert estimate_wait_seconds(2, 2, ago, 60.0, now) == 50.0
    assert estimate_wait_seconds(3, 2, ago, 60.0, now) == 80.0  # after the first waiter's own hold
    assert estimate_wait_seconds(1, 1, ago, 60.0, now) == 50.0  # capacity lowered: both must finish first
    assert estimate_wait_seconds(0, 2, ago, 60.0, now) == 0.0
    assert estimate_wait_seconds(None, 2, ago, 60.0, now) is None
    assert estimate_wait_seconds(1, 2, ago, None, now) is None


@pytest.mark.parametrize("capacity", [0, -3, True, 10_001])
def test_capacity_validator_refuses(capacity):
    from workflows.admission import AdmissionWorkflow as Wf

    with pytest.raises(ValueError):
        Wf._check_capacity(None, capacity)  # type: ignore[arg-type]


if __name__ == "__main__" and sys.argv[1:2] == ["record"]:
    import time

    name = sys.argv[2] if len(sys.argv) > 2 else "admission-v1.json"
    asyncio.run(_record_admission_history(ADMISSION_HISTORIES / name))
    time.sleep(0.5)  # a known SDK crash at interpreter exit right after env.shutdown()
