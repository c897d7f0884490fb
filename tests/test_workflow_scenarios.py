"""End-to-end scenarios of the work-order workflow: convergence strategies, budgets, cancel, idle timeout.

Every test runs the real `WorkOrderWorkflow` on a real Temporal server with real git and
real agent processes (small shell or Python programs written into tmp_path). The `fixed`
strategy is covered by tests/test_workflow.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError

from agentgate.artifacts import ArtifactStore
from agentgate.demo.sample_repo import GATE_COMMAND, TASK_PROMPT
from agentgate.ids import new_work_order_id
from agentgate.models import RunContext, WorkOrder
from tests.conftest import running_worker
from workflows.work_order import WorkOrderWorkflow

FAKE_BIN = Path(__file__).parent / "fixtures" / "bin"
PY = sys.executable


def make_order(repo: Path, *, agent: str | None = None, driver: str = "command", options: dict | None = None,
               gates: list[str] | None = None, **kw) -> WorkOrder:  # fmt: skip
    return WorkOrder(
        id=new_work_order_id(),
        created_at=datetime.now(UTC),
        task_prompt=TASK_PROMPT,
        workspace_source={"type": "local", "path": str(repo)},
        agent={"driver": driver, "command": agent, "options": options or {}},
        gates=gates if gates is not None else [GATE_COMMAND],
        **kw,
    )


async def run(env, settings, order: WorkOrder):
    async with running_worker(env, settings):
        return await env.client.execute_workflow(
            WorkOrderWorkflow.run, order, id=order.id, task_queue=settings.task_queue
        )


def script(tmp_path: Path, name: str, text: str) -> str:
    """A program outside the workspace (so it never lands in a snapshot); returns the command that runs it."""
    path = tmp_path / name
    path.write_text(text)
    return f"{PY} {path}" if name.endswith(".py") else f"/bin/sh {path}"


def git(repo: Path, *args: str) -> str:
    return subprocess.check_output(["git", "-C", str(repo), *args], text=True)


def decisions(outcome) -> list[str]:
    return [rec.decision or "" for rec in outcome.history]


# -- hybrid ----------------------------------------------------------------------------

STEP_TESTS = """import os
import unittest


class Steps(unittest.TestCase):
{body}

if __name__ == "__main__":
    unittest.main()
"""

STEP_AGENT = """import os
import sys
from pathlib import Path

n = int(os.environ["AGENTGATE_ITERATION"])
if n > {stop_after}:
    print(f"step-agent: iteration {{n}}, nothing more I can fix")
    sys.exit(0)
step = next(k for k in range(1, 100) if not Path(f"step{{k}}").exists())
Path(f"step{{step}}").write_text("done\\n")
print(f"step-agent: iteration {{n}} fixed test_step{{step}}")
"""


def step_repo(path: Path, tests: int) -> Path:
    """A repository whose unittest suite has `tests` tests; test k passes once the file stepk exists."""
    path.mkdir(parents=True)
    body = "\n".join(
        f"    def test_step{k}(self):\n        self.assertTrue(os.path.exists('step{k}'))\n"
        for k in range(1, tests + 1)
    )
    (path / "test_steps.py").write_text(STEP_TESTS.format(body=body))
    (path / ".gitignore").write_text("__pycache__/\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "-C", str(path), "commit", "-q",
                    "-m", "steps: failing tests"], check=True)  # fmt: skip
    return path


async def test_hybrid_grants_bonus_iterations_while_progress_rises(skip_env, settings, tmp_path):
    # 6 tests; the agent fixes one per iteration for 3 iterations, then changes nothing.
    repo = step_repo(tmp_path / "steps", 6)
    agent = script(tmp_path, "step_agent.py", STEP_AGENT.format(stop_after=3))
    order = make_order(
        repo,
        agent=agent,
        gates=["python3 -m unittest -v test_steps"],
        max_iterations=10,
        # Progress is over the whole plan (integrity, L0, L1...), so one more test is a rise of about 0.01.
        convergence={"strategy": "hybrid", "base_iterations": 2, "bonus_iterations": 3, "progress_threshold": 0.005},
    )
    outcome = await run(skip_env, settings, order)

    assert outcome.result == "failed_verification", outcome.error
    # base 1, base 2 (+ rise → bonus 1), bonus 2, then no rise → stop: 4 iterations, below the cap of 5.
    assert outcome.iterations == 4
    progress = [rec.verification.progress for rec in outcome.history]
    assert progress[0] < progress[1] < progress[2] == progress[3]
    d = decisions(outcome)
    assert d[0] == "continue: base iteration 1 of 2"
    assert d[1].startswith("continue: bonus iteration 1 of 3: progress rose by")
    assert d[2].startswith("continue: bonus iteration 2 of 3: progress rose by")
    assert d[3].startswith("stop: base iterations used and progress rose by only 0.00")
    assert [rec.snapshot.changed for rec in outcome.history] == [True, True, True, False]
    assert outcome.build_error is not None and outcome.build_error.type == "test_failed"


async def test_hybrid_stops_at_its_cap_of_base_plus_bonus(skip_env, settings, tmp_path):
    repo = step_repo(tmp_path / "steps", 8)
    agent = script(tmp_path, "step_agent.py", STEP_AGENT.format(stop_after=100))
    order = make_order(
        repo,
        agent=agent,
        gates=["python3 -m unittest -v test_steps"],
        max_iterations=10,
        convergence={"strategy": "hybrid", "base_iterations": 2, "bonus_iterations": 2, "progress_threshold": 0.005},
    )
    outcome = await run(skip_env, settings, order)
    assert outcome.result == "failed_verification"
    assert outcome.iterations == 4  # base 2 + bonus 2, although max_iterations is 10 and progress still rises
    assert "limit of 4 iteration(s) (strategy cap)" in decisions(outcome)[-1]


# -- ralph -----------------------------------------------------------------------------

RALPH_AGENT = """n=$AGENTGATE_ITERATION
echo "pass $n" >> notes.txt
if [ "$n" -ge 3 ]; then echo "all checks green. TASK COMPLETE"; else echo "still polishing (pass $n)"; fi
"""


async def test_ralph_continues_past_passing_gates_until_the_agent_signals_completion(skip_env, settings, sample_repo,
                                                                                   tmp_path):  # fmt: skip
    agent = script(tmp_path, "ralph.sh", RALPH_AGENT)
    order = make_order(sample_repo, agent=agent, gates=["test -f notes.txt"], max_iterations=6,
                       convergence={"strategy": "ralph"})  # fmt: skip
    outcome = await run(skip_env, settings, order)

    assert outcome.result == "passed", outcome.error
    assert outcome.iterations == 3
    assert all(rec.verification.passed for rec in outcome.history)
    assert [rec.agent.final_message for rec in outcome.history] == [
        "still polishing (pass 1)",
        "still polishing (pass 2)",
        "all checks green. TASK COMPLETE",
    ]
    d = decisions(outcome)
    assert d[0] == d[1] == "continue: gates pass but the agent has not signalled completion yet"
    assert d[2] == "stop: the agent signalled completion ('TASK COMPLETE') and all gates passed"
    assert all(rec.feedback is None for rec in outcome.history)  # nothing failed: no feedback to give
    assert git(sample_repo, "show", f"agentgate/{order.id}:notes.txt") == "pass 1\npass 2\npass 3\n"


# -- adaptive --------------------------------------------------------------------------


async def test_adaptive_stops_early_when_progress_stalls(skip_env, settings, sample_repo, tmp_path):
    # Busy but useless: it edits a file every time, the tests never get further.
    agent = script(tmp_path, "busy.sh", 'echo "note $AGENTGATE_ITERATION" >> notes.txt; echo rewrote the notes\n')
    order = make_order(sample_repo, agent=agent, max_iterations=8, convergence={"strategy": "adaptive"})
    outcome = await run(skip_env, settings, order)

    assert outcome.result == "failed_verification"
    assert outcome.iterations == 3 < order.max_iterations  # stall_window 2: the trend is judged after iteration 3
    assert all(rec.snapshot.changed for rec in outcome.history)
    d = decisions(outcome)
    assert d[0].startswith("continue: still within the first iterations")
    assert d[-1].startswith("stop: stalled: best progress in the last 2 iteration(s) is")
    assert "not above the earlier best" in d[-1]
    assert len({rec.verification.progress for rec in outcome.history}) == 1
    assert outcome.build_error.type == "test_failed"


# -- manual ----------------------------------------------------------------------------


async def test_manual_runs_until_the_operator_sends_stop(dev_env, settings, sample_repo, tmp_path):
    agent = script(tmp_path, "tick.sh", 'echo "tick $AGENTGATE_ITERATION" >> notes.txt; sleep 0.3; echo ticked\n')
    order = make_order(sample_repo, agent=agent, gates=["test -f notes.txt"], max_iterations=40,
                       convergence={"strategy": "manual"})  # fmt: skip
    async with running_worker(dev_env, settings):
        handle = await dev_env.client.start_workflow(
            WorkOrderWorkflow.run, order, id=order.id, task_queue=settings.task_queue
        )
        deadline = time.monotonic() + 30
        while True:
            status = await handle.query(WorkOrderWorkflow.status)  # typed: a RunOutcome, not a dict
            if status.history and status.history[0].decision:
                break
            assert time.monotonic() < deadline, "no iteration was recorded within 30 s"
            await asyncio.sleep(0.1)
        # Gates passed, yet the run goes on: a manual run waits for the operator.
        assert status.history[0].verification.passed
        assert status.history[0].decision.startswith("continue: manual: gates pass; waiting for an operator stop")
        assert status.result is None
        await handle.signal("stop")
        outcome = await handle.result()

    assert outcome.result == "passed", outcome.error
    assert 2 <= outcome.iterations < order.max_iterations
    d = decisions(outcome)
    assert all(x.startswith("continue: manual: gates pass") for x in d[:-1])
    assert d[-1] == "stop: an operator requested stop"


# -- budget ----------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [{"max_total_tokens": 1000}, {"max_cost_usd": 0.001}])
async def test_budget_stops_before_the_next_iteration(skip_env, settings, sample_repo, monkeypatch, budget):
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}")
    order = make_order(sample_repo, driver="claude-code", max_iterations=5, **budget)
    outcome = await run(skip_env, settings, order)

    # The fake claude fixes one function per session: iteration 1 alone leaves a failing test.
    assert outcome.iterations == 1
    assert outcome.result == "failed_verification"
    assert outcome.build_error is not None and outcome.build_error.type == "budget_exceeded"
    assert "budget is exhausted" in outcome.build_error.message
    assert outcome.history[0].decision.startswith("stop: the budget is exhausted")
    assert outcome.tokens.total >= 1000 if "max_total_tokens" in budget else outcome.cost_usd >= 0.001
    assert outcome.partial is True
    branch = f"agentgate/{order.id}"
    assert git(sample_repo, "log", "--format=%s", branch).splitlines()[0] == "agentgate: iteration 1"
    assert "return a + b" in git(sample_repo, "show", f"{branch}:mathlib.py")
    assert outcome.delivery.commit == git(sample_repo, "rev-parse", branch).strip()


# -- cancel ----------------------------------------------------------------------------

FORKING_AGENT = """echo $$ >> {pids}
sleep 1000 &
echo $! >> {pids}
{py} -c 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)' &
echo $! >> {pids}
setsid sleep 1000 &
echo $! >> {pids}
echo "forked my helpers"
wait
"""


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_cancel_ends_the_run_canceled_and_kills_the_whole_agent_tree(dev_env, settings, sample_repo, tmp_path):
    pids_file = tmp_path / "pids"
    agent = script(tmp_path, "forker.sh", FORKING_AGENT.format(pids=pids_file, py=PY))
    # Host PIDs in a host file: a plain subprocess (inside a sandbox see tests/test_sandbox.py).
    order = make_order(sample_repo, agent=agent, sandbox={"provider": "none", "network": "full"})
    async with running_worker(dev_env, settings):
        handle = await dev_env.client.start_workflow(
            WorkOrderWorkflow.run, order, id=order.id, task_queue=settings.task_queue
        )
        deadline = time.monotonic() + 30
        while not (pids_file.exists() and len(pids_file.read_text().split()) == 4):
            assert time.monotonic() < deadline, "the agent did not start its helpers"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the Python child has installed its SIGTERM handler
        pids = [int(p) for p in pids_file.read_text().split()]
        assert all(alive(p) for p in pids)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()

    assert isinstance(info.value.cause, CancelledError)
    survivors = [p for p in pids if alive(p)]
    assert survivors == []
    store = ArtifactStore(settings.runs_dir)
    ctx = RunContext(work_order_id=order.id, run_id=handle.first_execution_run_id)
    run_json = store.read_json(ctx, "run.json")
    assert run_json["result"] == "canceled"
    assert run_json["build_error"]["type"] == "canceled"
    assert "forked my helpers" in store.read_text(ctx, "agent-1.stdout.log")


# -- idle timeout ----------------------------------------------------------------------


async def test_idle_agent_is_stopped_as_stalled(dev_env, settings, sample_repo, tmp_path):
    agent = script(tmp_path, "idle.sh", "echo 'thinking...'\nsleep 60\n")
    order = make_order(sample_repo, agent=agent, options={"idle_timeout_seconds": 2})
    started = time.monotonic()
    outcome = await run(dev_env, settings, order)

    assert time.monotonic() - started < 20
    assert outcome.result == "failed_build"
    assert outcome.build_error is not None and outcome.build_error.type == "agent_stalled"
    assert outcome.iterations == 1
    assert outcome.history[0].decision == "stop: the agent failed"
