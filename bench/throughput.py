"""Throughput at capacity 8 and the worker's memory after 50 and after 500 runs.

A no-op agent (`true`) and a trivial gate (`true`): what is measured is AgentGate itself —
admission, prepare (a git clone), build, snapshot, verify, delivery, records, events. Orders
are submitted through the API in two bursts (16 clients each); completion is read from Temporal.
The baseline is the raw engine's concurrent workflows per second on the same server.

Memory: the worker process's RSS before any run, after the first `warm` runs, half-way and after
all `total` runs; a worker that leaks per run grows by the same KiB per run in both halves.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from bench.common import Stack, order_body, ratio, rss_kib, submit_many


async def _batch(stack: Stack, http: httpx.AsyncClient, repo: Path, count: int) -> float:
    """Submit `count` no-op orders at once; seconds from the first POST to the last completion."""
    begin = time.perf_counter()
    ids = await submit_many(stack, http, [order_body(repo, "true") for _ in range(count)])
    outcomes = await asyncio.gather(*(stack.wait_done(i) for i in ids))
    elapsed = time.perf_counter() - begin
    bad = [o for o in outcomes if o.result != "passed"]
    if bad:
        raise RuntimeError(f"{len(bad)} of {count} no-op runs did not pass, e.g. {bad[0].error}")
    return elapsed


async def throughput_and_rss(
    stack: Stack, http: httpx.AsyncClient, repo: Path, warm: int, total: int, capacity: int, raw: dict
) -> tuple[dict, dict]:
    assert stack.worker is not None
    await stack.set_capacity(http, capacity)
    rss_start = rss_kib(stack.worker.pid)
    await _batch(stack, http, repo, warm)
    rss_warm = rss_kib(stack.worker.pid)
    count = total - warm
    # Two bursts with a sample between them: three points show whether growth is a leak (linear) or a cache.
    half = count // 2
    elapsed = await _batch(stack, http, repo, half)
    rss_half = rss_kib(stack.worker.pid)
    elapsed += await _batch(stack, http, repo, count - half)
    rss_total = rss_kib(stack.worker.pid)
    per_second = count / elapsed
    baseline = raw["concurrent_workflows_per_second"]
    throughput = {
        "capacity": capacity,
        "orders": count,
        "seconds": round(elapsed, 2),
        "orders_per_second": round(per_second, 2),
        "baseline_raw_workflows_per_second": baseline,
        "ratio_vs_raw": ratio(per_second, baseline),
    }
    memory = {
        "rss_mib_at_start": round(rss_start / 1024, 1),
        f"rss_mib_after_{warm}_runs": round(rss_warm / 1024, 1),
        f"rss_mib_after_{warm + half}_runs": round(rss_half / 1024, 1),
        f"rss_mib_after_{total}_runs": round(rss_total / 1024, 1),
        f"ratio_{total}_vs_{warm}": ratio(rss_total, rss_warm),
        "growth_kib_per_run": round((rss_total - rss_warm) / count, 2),
        "growth_kib_per_run_first_half": round((rss_half - rss_warm) / half, 2),
        "growth_kib_per_run_second_half": round((rss_total - rss_half) / (count - half), 2),
    }
    return throughput, memory
