"""Submit latency: API `POST` → the agent process started, on an idle system.

Each order's agent is `date +%s%N` into a file named after its work-order id: the first thing
the agent process does, timed by the same wall clock the client read just before its POST.
Orders go one at a time, each waited for to the end, so every sample sees an idle system.
The baseline is the raw engine's start → activity latency from the same run.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from bench.common import Stack, order_body, percentiles, ratio


async def _agent_started_ns(mark: Path, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = mark.read_text().strip()
            if text:
                return int(text)
        except FileNotFoundError:
            pass
        await asyncio.sleep(0.002)
    raise RuntimeError(f"the agent did not start within {timeout:g} s ({mark.name})")


async def submit_latency(stack: Stack, http: httpx.AsyncClient, repo: Path, orders: int, raw: dict) -> dict:
    marks = stack.tmp / "submit-marks"
    marks.mkdir()
    body = order_body(repo, f'date +%s%N > {marks}/"$AGENTGATE_WORK_ORDER_ID"')
    to_agent, answered = [], []
    for n in range(orders + 2):  # the first two warm the path (admission workflow, connections): not counted
        begin = time.time_ns()
        wo_id = await stack.submit(http, body)
        answer_ns = time.time_ns()
        started = await _agent_started_ns(marks / wo_id)
        await stack.wait_done(wo_id)
        if n >= 2:
            to_agent.append((started - begin) / 1e6)
            answered.append((answer_ns - begin) / 1e6)
    baseline = raw["start_to_activity_ms_p50"]
    out = {
        "orders": orders,
        **percentiles(to_agent, "post_to_agent_ms"),
        **percentiles(answered, "post_answer_ms", (0.5, 0.95)),
        "baseline_raw_start_to_activity_ms_p50": baseline,
    }
    out["ratio_p50_vs_raw"] = ratio(out["post_to_agent_ms_p50"], baseline)
    return out
