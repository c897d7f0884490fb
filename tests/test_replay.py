"""Workflow histories replay deterministically against the current workflow code.

`tests/fixtures/histories/*.json` are histories of real runs recorded with an earlier
version of the code (`python -m tests.test_replay record` writes a new one). Replaying
them with Temporal's Replayer proves a deploy will not break runs in flight; a change that
would must be guarded with `workflow.patched()`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from tests.conftest import running_worker
from tests.test_workflow import make_order
from workflows.work_order import WorkOrderWorkflow

HISTORIES = Path(__file__).parent / "fixtures" / "histories"


def _replayer() -> Replayer:
    return Replayer(workflows=[WorkOrderWorkflow], data_converter=pydantic_data_converter)


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
async def test_recorded_history_replays(path: Path):
    data = json.loads(path.read_text())
    history = WorkflowHistory.from_json(data["workflow_id"], data["history"])
    result = await _replayer().replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure!r}"


def test_there_is_a_recorded_history():
    assert list(HISTORIES.glob("*.json")), "record one with: .venv/bin/python -m tests.test_replay record"


async def _record_demo(env, settings, repo) -> tuple[str, dict]:
    order = make_order(repo)
    async with running_worker(env, settings):
        handle = await env.client.start_workflow(
            WorkOrderWorkflow.run, order, id=order.id, task_queue=settings.task_queue
        )
        outcome = await handle.result()
        assert outcome.result == "passed" and outcome.iterations == 2
        history = await handle.fetch_history()
    return order.id, json.loads(history.to_json())


async def test_a_fresh_two_iteration_history_replays(skip_env, settings, sample_repo):
    workflow_id, history = await _record_demo(skip_env, settings, sample_repo)
    result = await _replayer().replay_workflow(WorkflowHistory.from_json(workflow_id, history))
    assert result.replay_failure is None


async def _record_to_file(target: Path) -> None:
    import tempfile
    import uuid

    from temporalio.testing import WorkflowEnvironment

    from agentgate import search_attributes as sa
    from agentgate.config import Settings
    from agentgate.demo.sample_repo import create_sample_repo

    tmp = Path(tempfile.mkdtemp())
    from tests.conftest import _binary

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=_binary("temporal-test-server"), data_converter=pydantic_data_converter
    )
    try:
        await sa.ensure_registered(env.client, "default")
        settings = Settings(home=tmp / "home", task_queue=f"rec-{uuid.uuid4().hex[:6]}", host_id="recorder")
        workflow_id, history = await _record_demo(env, settings, create_sample_repo(tmp / "repo"))
    finally:
        await env.shutdown()
    target.write_text(json.dumps({"workflow_id": workflow_id, "history": history}, indent=1) + "\n")
    print(f"recorded {target}")


if __name__ == "__main__" and sys.argv[1:2] == ["record"]:
    asyncio.run(_record_to_file(HISTORIES / (sys.argv[2] if len(sys.argv) > 2 else "demo-two-iterations.json")))
    import time

    time.sleep(0.5)  # a known SDK crash at interpreter exit right after env.shutdown()
