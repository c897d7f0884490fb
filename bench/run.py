"""AgentGate benchmarks: each figure is measured next to its baseline in the same run.

    .venv/bin/python -m bench.run            # everything, full size (make bench)
    .venv/bin/python -m bench.run --quick    # everything, small (make bench-quick)
    .venv/bin/python -m bench.run --only submit,events

Figures (each module's docstring says how it is measured):
- raw_engine   (bench/engine.py)     a trivial workflow + activity: the physical limit of this server
- overhead     (bench/overhead.py)   a 3-iteration order of fixed commands vs a bare shell loop
- submit       (bench/submit.py)     API POST → agent process started, p50/p95/p99, idle system
- events       (bench/events.py)     agent stdout line → SSE client, vs a bare pipe
- history      (bench/scale.py)      Temporal history bytes per iteration vs the raw workflow
- throughput   (bench/throughput.py) orders/s at capacity 8 (no-op agent, trivial gate) vs raw workflows/s
- memory       (bench/throughput.py) worker RSS after 500 runs vs after 50
- queue_scale  (bench/scale.py)      list / position latency with 1,000 queued vs 10 queued
Results are printed as a table and written to bench/results/<date>.json (<date>-quick.json for --quick;
a run with --only adds the figures' names, so it never overwrites a complete result).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Stack, machine, make_repo, start_temporal

RESULTS = Path(__file__).parent / "results"
FIGURES = ("raw_engine", "overhead", "submit", "events", "history", "throughput", "queue_scale")

FULL = {"raw": 50, "raw_concurrent": 100, "overhead_runs": 3, "step_seconds": 2.0, "submit_orders": 200,
        "event_lines": 200, "warm_runs": 50, "total_runs": 500, "queued": 1000, "samples": 20}  # fmt: skip
QUICK = {"raw": 20, "raw_concurrent": 20, "overhead_runs": 1, "step_seconds": 0.5, "submit_orders": 20,
         "event_lines": 50, "warm_runs": 10, "total_runs": 50, "queued": 150, "samples": 10}  # fmt: skip


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for development (a few minutes)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (runs, logs) for a look")
    parser.add_argument("--only", default="", help=f"comma-separated figures out of: {', '.join(FIGURES)}")
    for key, value in FULL.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=None, help=f"full: {value}")
    args = parser.parse_args()
    only = [f.strip() for f in args.only.split(",") if f.strip()]
    unknown = sorted(set(only) - set(FIGURES) - {"memory"})
    if unknown:
        parser.error(f"--only: unknown figure(s) {', '.join(unknown)}; choose from {', '.join(FIGURES)}")
    args.figures = [f for f in FIGURES if not only or f in only or (f == "throughput" and "memory" in only)]
    sizes = dict(QUICK if args.quick else FULL)
    for key in FULL:
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    if sizes["queued"] <= 60:
        parser.error(f"--queued must be more than the 60 of the baseline, got {sizes['queued']}")
    if sizes["total_runs"] <= sizes["warm_runs"]:
        parser.error(f"--total-runs must be more than --warm-runs ({sizes['warm_runs']}), got {sizes['total_runs']}")
    args.sizes = sizes
    return args


async def run(args: argparse.Namespace) -> dict:
    sizes, figures = args.sizes, args.figures
    tmp = Path(tempfile.mkdtemp(prefix="agentgate-bench-"))
    result: dict = {"date": datetime.now(UTC).isoformat(), "mode": "quick" if args.quick else "full",
                    "machine": machine(), "sizes": sizes}  # fmt: skip
    env = await start_temporal(tmp / "temporal.db")
    began = time.monotonic()
    try:
        from bench.engine import raw_baseline

        # Every other figure is compared with the raw engine: it always runs.
        _say("raw engine")
        result["raw_engine"] = raw = await raw_baseline(env.client, sizes["raw"], sizes["raw_concurrent"])
        if "overhead" in figures:
            from bench.overhead import overhead

            _say("overhead")
            result["overhead"] = await overhead(env.client, tmp, sizes["overhead_runs"], sizes["step_seconds"])
        stack_figures = [f for f in figures if f not in ("raw_engine", "overhead")]
        if stack_figures:
            await _stack_figures(env, tmp, sizes, stack_figures, raw, result)
    finally:
        await env.shutdown()
        if args.keep:
            print(f"kept {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - began, 1)
    return result


async def _stack_figures(env, tmp: Path, sizes: dict, figures: list[str], raw: dict, result: dict) -> None:
    from bench.events import event_latency
    from bench.scale import history_per_iteration, queue_scale
    from bench.submit import submit_latency
    from bench.throughput import throughput_and_rss

    repo = make_repo(tmp / "repo")
    (tmp / "stack").mkdir()
    async with Stack(env, tmp / "stack") as stack, stack.http() as http:
        if "submit" in figures:
            _say(f"submit latency ({sizes['submit_orders']} orders, one at a time)")
            result["submit"] = await submit_latency(stack, http, repo, sizes["submit_orders"], raw)
        if "events" in figures:
            _say(f"event latency ({sizes['event_lines']} lines)")
            result["events"] = await event_latency(stack, http, repo, sizes["event_lines"])
        if "history" in figures:
            _say("history bytes per iteration")
            result["history"] = await history_per_iteration(stack, http, repo, raw)
        if "throughput" in figures:
            _say(f"throughput at capacity 8 and worker memory ({sizes['total_runs']} runs)")
            result["throughput"], result["memory"] = await throughput_and_rss(
                stack, http, repo, sizes["warm_runs"], sizes["total_runs"], 8, raw
            )
        if "queue_scale" in figures:  # last: it leaves its orders waiting until the stack stops
            _say(f"queue scale ({sizes['queued']} queued)")
            result["queue_scale"] = await queue_scale(stack, http, repo, sizes["queued"], sizes["samples"])


def _say(what: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {what}…", flush=True)


HEADLINES = [
    ("submit", "post_to_agent_ms_p50", "baseline_raw_start_to_activity_ms_p50", "submit → agent started p50 (ms)"),
    ("submit", "post_to_agent_ms_p95", None, "submit → agent started p95 (ms)"),
    ("submit", "post_to_agent_ms_p99", None, "submit → agent started p99 (ms)"),
    ("throughput", "orders_per_second", "baseline_raw_workflows_per_second", "orders/s at capacity 8"),
    ("events", "stdout_to_sse_ms_p50", "bare_pipe_ms_p50", "stdout → SSE p50 (ms)"),
    ("events", "stdout_to_sse_ms_p95", "bare_pipe_ms_p95", "stdout → SSE p95 (ms)"),
    ("overhead", "orchestration_ms_per_iteration_p50", None, "orchestration per iteration (ms)"),
    ("overhead", "agentgate_seconds_p50", "bare_loop_seconds_p50", "3-iteration run (s)"),
    ("history", "bytes_per_iteration", "baseline_raw_workflow_bytes", "history bytes per iteration"),
    ("queue_scale", "list_ms_p50", "list_ms_p50_at_60", "list p50 (ms), {queued} vs 60 queued"),
    ("queue_scale", "list_queued_ms_p50", "list_queued_ms_p50_at_60", "list status=queued p50 (ms), {queued} vs 60"),
    ("queue_scale", "position_ms_p50", "position_ms_p50_at_60", "position p50 (ms), {queued} vs 60 queued"),
]


def report(result: dict) -> str:
    lines = [f"{'figure':44} {'value':>12} {'baseline':>12} {'ratio':>8}"]
    for section, key, base_key, label in HEADLINES:
        data = result.get(section)
        if not data or key not in data:
            continue
        value = data[key]
        base = data.get(base_key) if base_key else None
        ratio = value / base if base else math.nan
        label = label.format(queued=data.get("queued"))
        lines.append(f"{label:44} {value:12.2f} {_fmt(base):>12} {_fmt(ratio):>8}")
    mem = result.get("memory")
    if mem:
        after = [k for k in mem if k.startswith("rss_mib_after_")]
        label = f"worker RSS MiB, {after[-1].split('_')[3]} vs {after[0].split('_')[3]} runs"
        lines.append(f"{label:44} {mem[after[-1]]:12.2f} {mem[after[0]]:12.2f} {mem[after[-1]] / mem[after[0]]:8.2f}")
    lines.append("")
    lines.append("all figures:")
    for section in ("raw_engine", *FIGURES[1:], "memory"):
        for key, value in (result.get(section) or {}).items():
            lines.append(f"  {section + '.' + key:60} {_fmt(value) if isinstance(value, float) else value}")
    return "\n".join(lines)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2f}"


async def main() -> None:
    args = _args()
    result = await run(args)
    RESULTS.mkdir(exist_ok=True)
    # A partial run (--only) never overwrites the day's complete result.
    suffix = ("-quick" if args.quick else "") + (f"-{'-'.join(args.figures)}" if args.only else "")
    out = RESULTS / f"{datetime.now(UTC):%Y-%m-%d}{suffix}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    print(f"mode {result['mode']}, {result['seconds']} s, load at start {result['machine']['load_average_at_start']}")
    print(f"written to {out}")
    await asyncio.sleep(0.5)  # let the SDK runtime settle before interpreter exit


if __name__ == "__main__":
    asyncio.run(main())
