"""Stale detection: `kill -9` of the worker during a build is noticed by the agent activity's heartbeat timeout.

Workers here are real OS processes (`python -m agentgate.cli worker`) against the session's dev
server, all with the same host id, so they poll the same host queues and see the same workspaces.
The agent (a real program) records each attempt's PIDs and starts a child of its own, which
survives the worker's death (only the agent has PDEATHSIG): the next worker's start-up reaper
must stop it. `agent.options.heartbeat_timeout_seconds` keeps the detection to a few seconds.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agentgate import service
from agentgate.artifacts import QUARANTINE_DIR
from agentgate.config import Settings
from agentgate.demo.sample_repo import create_sample_repo
from agentgate.ids import new_work_order_id
from agentgate.models import WorkOrder
from agentgate.process import OWNER_VAR
from agentgate.reaper import _start_time, find_orphans
from tests.workers import WorkerProcess

HEARTBEAT_TIMEOUT = 4

AGENT = textwrap.dedent(
    """
    import os, pathlib, subprocess, sys, time
    state, mode = pathlib.Path(sys.argv[1]), sys.argv[2]
    n = len(list(state.glob("attempt-*"))) + 1
    if mode == "finish" and n >= 2:
        pathlib.Path("done.txt").write_text("finished by attempt %d\\n" % n)
        (state / f"attempt-{n}").write_text(f"{os.getpid()} 0 {os.getppid()}")
        sys.exit(0)
    child = subprocess.Popen(["/bin/sleep", "300"])  # a grandchild of the worker: no PDEATHSIG for it
    (state / f"attempt-{n}").write_text(f"{os.getpid()} {child.pid} {os.getppid()}")
    time.sleep(300)
    """
)
GATE = "python3 -c \"import pathlib, sys; sys.exit(0 if pathlib.Path('done.txt').exists() else 1)\""


def _gone(pid: int, start: str | None) -> bool:
    """Gone, or already gone when first seen (None), or its PID now names another process."""
    return pid == 0 or start is None or _start_time(pid) != start


async def _until(predicate, timeout: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.1)


class Attempts:
    """What the agent wrote about each attempt: (agent pid, child pid, parent pid), with their start times."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.starts: dict[int, str | None] = {}

    def count(self) -> int:
        return len([p for p in self.state.glob("attempt-*") if p.read_text().strip()])

    def pids(self, n: int) -> tuple[int, int, int]:
        agent, child, parent = (int(x) for x in (self.state / f"attempt-{n}").read_text().split())
        for pid in (agent, child):
            self.starts.setdefault(pid, _start_time(pid))
        return agent, child, parent

    def all_gone(self) -> bool:
        return all(_gone(pid, start) for pid, start in self.starts.items())


def _settings(dev_env, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        temporal_address=dev_env.client.service_client.config.target_host,
        task_queue=f"agentgate-loss-{uuid.uuid4().hex[:8]}",
        host_id=f"host-{uuid.uuid4().hex[:6]}",
    )


def _order(repo: Path, state: Path, mode: str) -> WorkOrder:
    script = state.parent / "agent.py"
    script.write_text(AGENT)
    return WorkOrder(
        id=new_work_order_id(),
        created_at=datetime.now(UTC),
        task_prompt="Write done.txt (and survive a lost worker).",
        workspace_source={"type": "local", "path": str(repo)},
        agent={
            "driver": "command",
            "command": f"{sys.executable} {script} {state} {mode}",
            "options": {"heartbeat_timeout_seconds": HEARTBEAT_TIMEOUT},
        },
        gates=[GATE],
        max_iterations=1,
        max_wall_clock_seconds=600,
        sandbox={"provider": "none", "network": "full"},  # host PIDs in host files: trusted local use
    )


def _no_marked_processes(host_id: str) -> bool:
    """No live process anywhere carries an owner marker of this (test-only) host id."""
    needle = f"{OWNER_VAR}={host_id}:".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read()
        except OSError:
            continue
        if needle in env and _start_time(int(entry)) is not None:
            return False
    return True


@pytest.fixture
def workers():
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


async def test_kill_9_during_build_a_second_worker_finishes_the_run(dev_env, tmp_path, workers):
    settings = _settings(dev_env, tmp_path)
    repo = create_sample_repo(tmp_path / "repo")
    state = tmp_path / "state"
    state.mkdir()
    attempts = Attempts(state)
    # A corrupt record in the store: the worker's start-up storage check quarantines it.
    corrupt = settings.runs_dir / new_work_order_id() / "00000000-0000-0000-0000-000000000000" / "run.json"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text('{"status": ')

    first = WorkerProcess(settings, tmp_path / "worker-1.log")
    workers.append(first)
    order = _order(repo, state, "finish")
    handle, _ = await service.start_work_order(dev_env.client, settings, order)
    await _until(lambda: attempts.count() == 1, 90, "the first attempt's agent started")
    agent, child, parent = attempts.pids(1)
    assert not corrupt.exists()
    assert list((settings.runs_dir / QUARANTINE_DIR).rglob("run.json.*.reason"))

    first.kill9()
    second = WorkerProcess(settings, tmp_path / "worker-2.log")
    workers.append(second)
    # The agent died with its worker (PDEATHSIG, or the reaper); its own child only by the reaper.
    await _until(attempts.all_gone, 30, f"the dead worker's agent {agent} and its child {child} stopped")

    outcome = await asyncio.wait_for(handle.result(), timeout=90)
    assert outcome.result == "passed", (outcome.error, (tmp_path / "worker-2.log").read_text()[-3000:])
    assert outcome.iterations == 1 and attempts.count() == 2
    assert (settings.workspaces_dir / order.id / outcome.run_id / "done.txt").read_text().startswith("finished by")
    _, _, retry_parent = attempts.pids(2)
    assert retry_parent != parent  # the retry ran under the second worker (its /bin/sh), not the dead one's

    second.stop()
    assert attempts.all_gone() and not find_orphans(settings.host_id) and _no_marked_processes(settings.host_id)


async def test_an_agent_lost_on_every_attempt_ends_agent_stalled(dev_env, tmp_path, workers):
    """Each attempt's worker is killed; when the retries are exhausted the run fails `agent_stalled`, not forever."""
    settings = _settings(dev_env, tmp_path)
    repo = create_sample_repo(tmp_path / "repo")
    state = tmp_path / "state"
    state.mkdir()
    attempts = Attempts(state)
    order = _order(repo, state, "hang")
    handle, _ = await service.start_work_order(dev_env.client, settings, order)

    for n in (1, 2, 3):  # AGENT_RETRY allows three attempts
        worker = WorkerProcess(settings, tmp_path / f"worker-{n}.log")
        workers.append(worker)
        await _until(lambda n=n: attempts.count() == n, 90, f"attempt {n} started")
        attempts.pids(n)
        worker.kill9()
    last = WorkerProcess(settings, tmp_path / "worker-last.log")  # runs the workflow to its end
    workers.append(last)

    outcome = await asyncio.wait_for(handle.result(), timeout=90)
    assert outcome.status.value == "failed" and outcome.result == "failed_build", outcome
    assert outcome.build_error is not None and outcome.build_error.type.value == "agent_stalled"
    assert f"no heartbeat from the agent activity for {HEARTBEAT_TIMEOUT} s" in outcome.build_error.message
    assert attempts.count() == 3
    await _until(attempts.all_gone, 30, "every attempt's processes stopped")
    last.stop()
    assert _no_marked_processes(settings.host_id)
