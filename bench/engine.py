"""Raw engine baseline: a trivial workflow with one activity on the same Temporal server.

This is the physical limit every AgentGate figure is compared with: how fast this server and
one Python worker start a workflow and its activity (latency), how many such workflows they
complete per second one after another and all at once (throughput), and how many history
bytes one workflow with one activity takes.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    from bench.common import percentiles


@activity.defn(name="bench_noop")
async def noop(started_ns: int) -> int:
    return time.time_ns() - started_ns


@workflow.defn(name="BenchRawWorkflow")
class RawWorkflow:
    @workflow.run
    async def run(self, started_ns: int) -> int:
        return await workflow.execute_activity(noop, started_ns, start_to_close_timeout=timedelta(seconds=30))


def history_bytes(history) -> int:
    """Serialized size of every event of a fetched history (what Temporal stores and replays)."""
    return sum(event.ByteSize() for event in history.events)


async def raw_baseline(client: Client, runs: int, concurrent: int) -> dict:
    queue = f"bench-raw-{uuid.uuid4().hex[:6]}"
    start_to_activity, round_trip = [], []
    async with Worker(client, task_queue=queue, workflows=[RawWorkflow], activities=[noop]):
        t0 = time.perf_counter()
        for _ in range(runs):
            begin = time.perf_counter()
            latency_ns = await client.execute_workflow(
                RawWorkflow.run, time.time_ns(), id=f"bench-{uuid.uuid4().hex}", task_queue=queue
            )
            round_trip.append((time.perf_counter() - begin) * 1000)
            start_to_activity.append(latency_ns / 1e6)
        sequential = runs / (time.perf_counter() - t0)

        t0 = time.perf_counter()
        ids = [f"bench-{uuid.uuid4().hex}" for _ in range(concurrent)]
        await asyncio.gather(
            *(client.execute_workflow(RawWorkflow.run, time.time_ns(), id=i, task_queue=queue) for i in ids)
        )
        parallel = concurrent / (time.perf_counter() - t0)
        size = history_bytes(await client.get_workflow_handle(ids[0]).fetch_history())
    return {
        "runs": runs,
        **percentiles(start_to_activity, "start_to_activity_ms", (0.5, 0.95, 0.99)),
        **percentiles(round_trip, "round_trip_ms", (0.5, 0.95)),
        "sequential_workflows_per_second": round(sequential, 2),
        "concurrent_runs": concurrent,
        "concurrent_workflows_per_second": round(parallel, 2),
        "history_bytes": size,
    }
