"""AgentGate benchmarks: each figure is measured next to its baseline in the same run.

    .venv/bin/python -m bench.run [--iterations-runs N] [--raw N]

- Overhead: a 3-iteration work order whose agent and gate are fixed commands of
  --step-seconds each, against a bare shell loop running the same commands; printed as a
  ratio and as orchestration milliseconds per iteration.
- Raw engine baseline: a trivial workflow with one activity on the same Temporal dev
  server, the physical limit per-iteration costs compare with (p50/p95 start→activity and
  round trip, workflows per second).
Results are printed as a table and written to bench/results/<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():  # this module also defines the raw workflow
    from agentgate import search_attributes as sa
    from agentgate.config import Settings
    from agentgate.ids import new_work_order_id
    from agentgate.models import WorkOrder
    from worker import build_workers
    from workflows.work_order import WorkOrderWorkflow

RESULTS = Path(__file__).parent / "results"


@activity.defn(name="bench_noop")
async def noop(started_ns: int) -> int:
    return time.time_ns() - started_ns


@workflow.defn(name="BenchRawWorkflow")
class RawWorkflow:
    @workflow.run
    async def run(self, started_ns: int) -> int:
        return await workflow.execute_activity(noop, started_ns, start_to_close_timeout=timedelta(seconds=30))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def raw_baseline(env: WorkflowEnvironment, runs: int) -> dict:
    queue = f"bench-raw-{uuid.uuid4().hex[:6]}"
    start_to_activity, round_trip = [], []
    async with Worker(env.client, task_queue=queue, workflows=[RawWorkflow], activities=[noop]):
        t0 = time.perf_counter()
        for _ in range(runs):
            begin = time.perf_counter()
            latency_ns = await env.client.execute_workflow(
                RawWorkflow.run, time.time_ns(), id=f"bench-{uuid.uuid4().hex}", task_queue=queue
            )
            round_trip.append((time.perf_counter() - begin) * 1000)
            start_to_activity.append(latency_ns / 1e6)
        elapsed = time.perf_counter() - t0
    return {
        "runs": runs,
        "start_to_activity_ms_p50": pct(start_to_activity, 0.5),
        "start_to_activity_ms_p95": pct(start_to_activity, 0.95),
        "round_trip_ms_p50": pct(round_trip, 0.5),
        "round_trip_ms_p95": pct(round_trip, 0.95),
        "sequential_workflows_per_second": runs / elapsed,
    }


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "README").write_text("bench\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@localhost", "-C", str(path), "commit", "-qm", "init"],
        check=True,
    )
    return path


async def overhead(env: WorkflowEnvironment, tmp: Path, runs: int, step: float) -> dict:
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
    settings = Settings(home=tmp / "home", task_queue=f"bench-{uuid.uuid4().hex[:6]}", host_id="bench")
    orchestrated = []
    async with _workers(env, settings):
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
            outcome = await env.client.execute_workflow(
                WorkOrderWorkflow.run, order, id=order.id, task_queue=settings.task_queue
            )
            orchestrated.append(time.perf_counter() - begin)
            assert outcome.iterations == 3, outcome
    bare_p50, orch_p50 = statistics.median(bare), statistics.median(orchestrated)
    return {
        "runs": runs,
        "step_seconds": step,
        "bare_loop_seconds_p50": bare_p50,
        "agentgate_seconds_p50": orch_p50,
        "ratio_p50": orch_p50 / bare_p50,
        "orchestration_ms_per_iteration_p50": (orch_p50 - bare_p50) * 1000 / 3,
    }


class _workers:
    def __init__(self, env, settings):
        self.workers = build_workers(env.client, settings)

    async def __aenter__(self):
        for w in self.workers:
            await w.__aenter__()

    async def __aexit__(self, *exc):
        for w in reversed(self.workers):
            await w.__aexit__(*exc)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", type=int, default=50, help="raw-engine workflows")
    parser.add_argument("--runs", type=int, default=3, help="3-iteration work orders for the overhead figure")
    parser.add_argument("--step-seconds", type=float, default=2.0, help="duration of the agent and gate commands")
    args = parser.parse_args()
    temporal = shutil.which("temporal", path=str(Path(sys.executable).parent))
    tmp = Path(tempfile.mkdtemp(prefix="agentgate-bench-"))
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal,
        data_converter=pydantic_data_converter,
        search_attributes=sa.ALL,
        dev_server_database_filename=str(tmp / "temporal.db"),
        dev_server_extra_args=["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=off"],
    )
    try:
        raw = await raw_baseline(env, args.raw)
        over = await overhead(env, tmp, args.runs, args.step_seconds)
    finally:
        await env.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"date": datetime.now(UTC).isoformat(), "machine": _machine(), "raw_engine": raw, "overhead": over}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{datetime.now(UTC):%Y-%m-%d}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'figure':48} {'value':>12}")
    for section in ("raw_engine", "overhead"):
        for key, value in result[section].items():
            print(
                f"{section + '.' + key:48} {value:12.3f}" if isinstance(value, float) else f"{section}.{key:40} {value}"
            )
    print(f"written to {out}")
    await asyncio.sleep(0.5)  # let the SDK runtime settle before interpreter exit


def _machine() -> dict:
    import os
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


if __name__ == "__main__":
    asyncio.run(main())
