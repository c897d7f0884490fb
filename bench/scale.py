"""Scale: list and position latency with 1,000 orders waiting, against the same with 60 waiting (more than
one page of 50, so both lists return full pages);
Temporal history bytes per iteration, against the raw engine's one-activity workflow.

The queue is held at capacity 1 by a first order whose agent sleeps (it records its PID, and is
stopped with the worker; by that PID if it is still there). Everything else waits in the
admission queue, which is what `GET …/position` asks (a workflow query) and what
`GET /api/v1/work-orders` lists (Temporal visibility, newest first).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path

import httpx

from bench.common import Stack, order_body, percentiles, ratio, submit_many
from bench.engine import history_bytes

BASELINE_QUEUED = 60  # > one page of 50: the baseline list returns as many items as the one at scale


async def _timed(http: httpx.AsyncClient, path: str) -> float:
    begin = time.perf_counter()
    answer = await http.get(path)
    elapsed = (time.perf_counter() - begin) * 1000
    answer.raise_for_status()
    return elapsed


async def _until_queued(http: httpx.AsyncClient, count: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await http.get("/api/v1/queue/stats")).json().get("queued", 0) >= count:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"fewer than {count} orders queued after {timeout:g} s")


async def _measure(http: httpx.AsyncClient, ids: list[str], samples: int, rng: random.Random) -> dict:
    lists = [await _timed(http, "/api/v1/work-orders?limit=50") for _ in range(samples)]
    queued = [await _timed(http, "/api/v1/work-orders?status=queued&limit=50") for _ in range(samples)]
    positions = [await _timed(http, f"/api/v1/work-orders/{rng.choice(ids)}/position") for _ in range(samples)]
    stats = [await _timed(http, "/api/v1/queue/stats") for _ in range(samples)]
    return {
        **percentiles(lists, "list_ms", (0.5, 0.95)),
        **percentiles(queued, "list_queued_ms", (0.5, 0.95)),
        **percentiles(positions, "position_ms", (0.5, 0.95)),
        **percentiles(stats, "stats_ms", (0.5, 0.95)),
    }


async def queue_scale(stack: Stack, http: httpx.AsyncClient, repo: Path, queued: int, samples: int) -> dict:
    rng = random.Random(8)
    pid_file = stack.tmp / "blocker.pid"
    await stack.set_capacity(http, 1)
    await stack.submit(http, order_body(repo, f"echo $$ > {pid_file}; sleep 3600"))
    deadline = time.monotonic() + 120
    while not (pid_file.exists() and pid_file.read_text().strip()):
        if time.monotonic() > deadline:
            raise RuntimeError("the blocking order's agent did not start")
        await asyncio.sleep(0.1)
    try:
        small = BASELINE_QUEUED
        first = await submit_many(stack, http, [order_body(repo, "true") for _ in range(small)])
        await _until_queued(http, small)
        few = await _measure(http, first, samples, rng)

        begin = time.perf_counter()
        rest = await submit_many(stack, http, [order_body(repo, "true") for _ in range(queued - small)])
        submit_seconds = time.perf_counter() - begin
        await _until_queued(http, queued)
        many = await _measure(http, first + rest, samples, rng)
    finally:
        _stop_blocker(pid_file)
    out: dict = {"queued": queued, "baseline_queued": small, "submit_per_second": round(len(rest) / submit_seconds, 1)}
    for key, value in many.items():
        out[key] = value
    for key in ("list_ms_p50", "list_queued_ms_p50", "position_ms_p50", "stats_ms_p50"):
        out[f"{key}_at_{small}"] = few[key]
        out[f"{key.removesuffix('_p50')}_ratio_p50"] = ratio(many[key], few[key])
    return out


def _stop_blocker(pid_file: Path) -> None:
    """The blocking agent is ours: stop it by the PID it wrote (the worker's shutdown would, too)."""
    try:
        os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
    except (OSError, ValueError):
        pass


async def history_per_iteration(stack: Stack, http: httpx.AsyncClient, repo: Path, raw: dict) -> dict:
    """Bytes and events of a 3-iteration run minus a 1-iteration run, halved: the cost of one more iteration."""
    await stack.set_capacity(http, 8)
    one = await stack.submit(http, order_body(repo, "echo one >> progress.txt", "true"))
    three = await stack.submit(http, order_body(repo, "echo more >> progress.txt", "false", max_iterations=3))
    await asyncio.gather(stack.wait_done(one), stack.wait_done(three))
    h1 = await stack.env.client.get_workflow_handle(one).fetch_history()
    h3 = await stack.env.client.get_workflow_handle(three).fetch_history()
    b1, b3 = history_bytes(h1), history_bytes(h3)
    per_iteration = (b3 - b1) / 2
    return {
        "one_iteration_bytes": b1,
        "three_iterations_bytes": b3,
        "bytes_per_iteration": round(per_iteration),
        "events_per_iteration": round((len(h3.events) - len(h1.events)) / 2, 1),
        "fixed_bytes_per_run": round(b1 - per_iteration),
        "baseline_raw_workflow_bytes": raw["history_bytes"],
        "ratio_per_iteration_vs_raw": ratio(per_iteration, raw["history_bytes"]),
        "ratio_per_iteration_vs_20kb_budget": ratio(per_iteration, 20 * 1024),
    }
