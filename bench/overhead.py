"""Overhead: a 3-iteration work order whose agent and gate are fixed commands, against a bare shell loop.

Both run the same commands (`--step-seconds` each) in a fresh repository; the difference is
what AgentGate adds per iteration: prepare, snapshot commit and patch, records, events,
delivery, Temporal round trips. The workers run in this process on their own task queue.
"""

from __future__ import annotations

import statistics
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import Client

from agentgate.config import Settings
from agentgate.ids import new_work_order_id
from agentgate.models import WorkOrder
from bench.common import make_repo
from worker import build_workers
from workflows.work_order import WorkOrderWorkflow


async def overhead(client: Client, tmp: Path, runs: int, step: float) -> dict:
    agent = f"sleep {step}; date +%s%N >> progress.txt"
    gate = f"sleep {step}; exit 1"  # never passes: exactly 3 iterations
    bare = []
    for _ in range(runs):
        repo = make_repo(tmp / f"bare-{uuid.uuid4().hex[:6]}")
        begin = time.perf_counter()
        for _ in range(3):
            subprocess.run(["/bin/sh", "-c", agent], cwd=repo, check=True)  # noqa: ASYNC221 - the bare baseline
            subprocess.run(["/bin/sh", "-c", gate], cwd=repo, check=False)  # noqa: ASYNC221
        bare.append(time.perf_counter() - begin)
    settings = Settings(home=tmp / "overhead-home", task_queue=f"bench-{uuid.uuid4().hex[:6]}", host_id="bench-o")
    orchestrated = []
    workers = build_workers(client, settings)
    async with workers[0], workers[1], workers[2]:
        for _ in range(runs):
            repo = make_repo(tmp / f"wo-{uuid.uuid4().hex[:6]}")
            order = WorkOrder(
                id=new_work_order_id(),
                created_at=datetime.now(UTC),
                task_prompt="bench",
                workspace_source={"type": "local", "path": str(repo)},
                agent={"driver": "command", "command": agent},
                gates=[gate],
                max_iterations=3,
            )
            begin = time.perf_counter()
            outcome = await client.execute_workflow(
                WorkOrderWorkflow.run, order, id=order.id, task_queue=settings.task_queue
            )
            orchestrated.append(time.perf_counter() - begin)
            if outcome.iterations != 3:
                raise RuntimeError(f"overhead run did {outcome.iterations} iterations, not 3: {outcome.error}")
    bare_p50, orch_p50 = statistics.median(bare), statistics.median(orchestrated)
    return {
        "runs": runs,
        "step_seconds": step,
        "bare_loop_seconds_p50": round(bare_p50, 3),
        "agentgate_seconds_p50": round(orch_p50, 3),
        "ratio_p50": round(orch_p50 / bare_p50, 3),
        "orchestration_ms_per_iteration_p50": round((orch_p50 - bare_p50) * 1000 / 3, 1),
    }
