"""Event latency: an agent's stdout line → an SSE client of the API, against a bare pipe.

The agent prints `tick <time.time_ns()>` lines; the SSE client (`GET …/events`, following)
takes the difference to its own clock when each `agent_output` event arrives. The path is:
pipe → worker (parser, redaction, events.jsonl) → the API's file follower (polls every 50 ms)
→ HTTP. The baseline is the same program read straight from its pipe by this process.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import time
from pathlib import Path

import httpx

from bench.common import Stack, order_body, percentiles, ratio

TICKER = textwrap.dedent(
    """
    import sys, time
    lines, delay, interval = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    time.sleep(delay)
    for _ in range(lines):
        print("tick", time.time_ns(), flush=True)
        time.sleep(interval)
    """
)
INTERVAL = 0.02


async def _bare_pipe(script: Path, lines: int) -> list[float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), str(lines), "0", str(INTERVAL), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    samples = []
    async for raw in proc.stdout:
        now = time.time_ns()
        parts = raw.split()
        if len(parts) == 2 and parts[0] == b"tick":
            samples.append((now - int(parts[1])) / 1e6)
    await proc.wait()
    return samples


async def _sse(stack: Stack, wo_id: str) -> list[float]:
    samples = []
    fields: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=stack.url, timeout=httpx.Timeout(300)) as http:
        async with http.stream("GET", f"/api/v1/work-orders/{wo_id}/events") as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value.lstrip(" ")
                    continue
                event, data = fields.get("event"), fields.get("data")
                fields = {}
                if event == "agent_output" and data:
                    now = time.time_ns()
                    parts = (json.loads(data).get("text") or "").split()
                    if len(parts) == 2 and parts[0] == "tick":
                        samples.append((now - int(parts[1])) / 1e6)
                elif event in ("run_completed", "run_failed", "run_canceled"):
                    break
    return samples


async def event_latency(stack: Stack, http: httpx.AsyncClient, repo: Path, lines: int) -> dict:
    script = stack.tmp / "ticker.py"
    script.write_text(TICKER)
    bare = await _bare_pipe(script, lines)
    # A pause before the first line, so the client is connected and every sample is live (not a replay).
    body = order_body(repo, f"{sys.executable} {script} {lines} 2 {INTERVAL}")
    wo_id = await stack.submit(http, body)
    samples = await _sse(stack, wo_id)
    await stack.wait_done(wo_id)
    if len(samples) != lines:
        raise RuntimeError(f"the SSE client got {len(samples)} of {lines} lines")
    out = {
        "lines": lines,
        "line_interval_ms": INTERVAL * 1000,
        **percentiles(samples, "stdout_to_sse_ms", (0.5, 0.95, 0.99)),
        **percentiles(bare, "bare_pipe_ms", (0.5, 0.95)),
    }
    out["extra_ms_p50"] = round(out["stdout_to_sse_ms_p50"] - out["bare_pipe_ms_p50"], 3)
    out["ratio_p95_vs_100ms_target"] = ratio(out["stdout_to_sse_ms_p95"], 100.0)
    return out
