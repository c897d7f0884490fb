"""Does anything of ours grow per run? An in-process worker under `tracemalloc`, no-op runs in batches.

`make bench` measures the worker's RSS from outside; RSS mixes Python objects with native memory
(Temporal's Rust core, the C allocator's arenas). This probe runs the real workers
(`worker.build_workers`) in its own process against a fresh Temporal dev server (the benchmark's,
`bench.common.start_temporal`), submits no-op orders (agent `true`, gate `true`, one iteration)
the way the API does (`service.start_work_order`), and after a warm-up compares snapshots taken
between batches:

- `tracemalloc` (25 frames): the top growers by traceback, and the growth per source file;
- `gc.get_objects()` counted by type: which Python types pile up;
- VmRSS from /proc/self/status, so Python heap growth can be set against RSS growth.

Python memory that grows by the same amount per run in each interval is a leak; growth in RSS that
is not in `tracemalloc` is native. Run it with and without `MALLOC_ARENA_MAX=2` to see the allocator's part:

    .venv/bin/python -m bench.leak_probe --warm 30 --batches 100,100
    MALLOC_ARENA_MAX=2 .venv/bin/python -m bench.leak_probe --warm 30 --batches 100,100

Tracing off the probe (`--no-tracemalloc`) measures RSS only, at full speed (tracemalloc itself
costs memory and CPU). It is not part of `make bench`: it takes minutes and prints a diagnosis, not a figure.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

from bench.common import ROOT, make_repo, order_body, start_temporal

if str(ROOT) not in sys.path:  # worker.py and workflows/ live at the top of the repository
    sys.path.insert(0, str(ROOT))

FRAMES = 25


def rss_self_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def type_counts() -> dict[str, int]:
    """Live objects by type. A plain loop here, so that tracemalloc can filter these allocations by file."""
    gc.collect()
    counts: dict[str, int] = {}
    for o in gc.get_objects():
        name = f"{type(o).__module__}.{type(o).__qualname__}"
        counts[name] = counts.get(name, 0) + 1
    return counts


def our_tables() -> dict[str, int]:
    """Sizes of our own per-run tables (each should stop at its bound, or stay near the runs in flight)."""
    from agentgate.observability import emitter, metrics

    sizes: dict[str, int] = {"store emitters": len(emitter._store_emitters)}
    for _store, em in list(emitter._store_emitters.values()):
        sizes["emitter fallback seq (≤1000)"] = len(em._fallback_seq)
        for sub in em.subscribers:
            if isinstance(sub, emitter.JsonlSubscriber):
                sizes["events.jsonl seq cache (≤512)"] = len(sub._cache)
    from agentgate import artifacts

    for name, bound in (("_names", 256), ("_redactors", 32), ("_pinned", 256)):
        sizes[f"redactors {name} (≤{bound})"] = len(getattr(artifacts._REDACTORS, name))
    sub = emitter._metrics_subscriber
    if sub is not None:
        sizes["metrics open runs"] = len(sub._run_started)
        sizes["metrics open phases"] = len(sub._phase_started)
        sizes["metrics active runs"] = len(sub._active)
    sizes["prometheus series"] = sum(len(m._metrics) for m in _labelled_metrics(metrics))
    return sizes


def _labelled_metrics(module) -> list:
    from prometheus_client.metrics import MetricWrapperBase

    return [m for m in vars(module).values() if isinstance(m, MetricWrapperBase) and m._labelnames]


def malloc_trim() -> bool:
    """glibc's malloc_trim(0): hand free heap pages back to the OS. False where there is no glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


class Sample:
    """One point: runs so far, RSS, Python heap (tracemalloc), object counts by type, and the snapshot.

    With `trim`, RSS is also read after malloc_trim(0): memory that comes back then was free
    memory the allocator kept (fragmentation, arenas), not live data.
    """

    def __init__(self, runs: int, traced: bool, trim: bool = False) -> None:
        gc.collect()
        self.runs = runs
        self.rss_kib = rss_self_kib()
        self.rss_trimmed_kib = rss_self_kib() if trim and malloc_trim() else None
        self.snapshot = tracemalloc.take_snapshot() if traced else None
        self.traced_kib = tracemalloc.get_traced_memory()[0] / 1024 if traced else float("nan")
        self.types = type_counts()
        self.tables = our_tables()


def _filtered(snapshot: tracemalloc.Snapshot) -> tracemalloc.Snapshot:
    return snapshot.filter_traces(
        [
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, __file__),  # the probe's own samples (type counts) are not the worker's
            tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
            tracemalloc.Filter(False, "<unknown>"),
        ]
    )


def _ours(frame_file: str) -> bool:
    return frame_file.startswith(str(ROOT)) and "/.venv/" not in frame_file


def report_interval(a: Sample, b: Sample, top: int) -> dict:
    runs = b.runs - a.runs
    out: dict = {
        "runs": f"{a.runs}→{b.runs}",
        "rss_kib_per_run": round((b.rss_kib - a.rss_kib) / runs, 1),
    }
    if a.snapshot is not None:
        out["python_heap_kib_per_run"] = round((b.traced_kib - a.traced_kib) / runs, 1)
    print(f"\n=== runs {a.runs} → {b.runs} ({runs} runs) ===")
    print(f"RSS        {a.rss_kib / 1024:8.1f} → {b.rss_kib / 1024:8.1f} MiB   {out['rss_kib_per_run']:+8.1f} KiB/run")
    if a.rss_trimmed_kib is not None and b.rss_trimmed_kib is not None:
        out["rss_after_trim_kib_per_run"] = round((b.rss_trimmed_kib - a.rss_trimmed_kib) / runs, 1)
        print(
            f"RSS trimmed {a.rss_trimmed_kib / 1024:7.1f} → {b.rss_trimmed_kib / 1024:8.1f} MiB   "
            f"{out['rss_after_trim_kib_per_run']:+8.1f} KiB/run (after malloc_trim(0))"
        )
    if a.snapshot is not None and b.snapshot is not None:
        print(
            f"Python heap {a.traced_kib / 1024:7.1f} → {b.traced_kib / 1024:8.1f} MiB   "
            f"{out['python_heap_kib_per_run']:+8.1f} KiB/run (tracemalloc)"
        )
        sa, sb = _filtered(a.snapshot), _filtered(b.snapshot)
        by_file = sorted(sb.compare_to(sa, "filename"), key=lambda d: d.size_diff, reverse=True)
        print(f"\n-- growth by file (top {top}) --")
        for d in by_file[:top]:
            print(f"{d.size_diff / runs:+9.0f} B/run {d.count_diff / runs:+7.2f} blocks/run  {d.traceback[0].filename}")
        out["by_file"] = [
            {"file": d.traceback[0].filename, "bytes_per_run": round(d.size_diff / runs)} for d in by_file[:top]
        ]
        by_tb = sorted(sb.compare_to(sa, "traceback"), key=lambda d: d.size_diff, reverse=True)
        print(f"\n-- growth by traceback (top {top}; innermost frame, then our own innermost frame) --")
        rows = []
        for d in by_tb[:top]:
            inner = d.traceback[-1] if d.traceback else None
            ours = next((f for f in reversed(d.traceback) if _ours(f.filename)), None)
            line = f"{d.size_diff / runs:+9.0f} B/run {d.count_diff / runs:+7.2f} blocks/run  {inner}"
            if ours is not None and ours is not inner:
                line += f"\n{'':40}ours: {ours}"
            print(line)
            rows.append({"bytes_per_run": round(d.size_diff / runs), "frame": str(inner), "ours": str(ours)})
        out["by_traceback"] = rows
    print("\n-- our per-run tables --")
    for name, size in b.tables.items():
        print(f"{size:8d}  ({size - a.tables.get(name, 0):+d} since {a.runs})  {name}")
    out["tables"] = b.tables
    grown = sorted(((n, b.types[n] - a.types.get(n, 0)) for n in b.types), key=lambda p: p[1], reverse=True)
    print(f"\n-- gc objects by type, growth (top {top}) --")
    for name, diff in grown[:top]:
        if diff <= 0:
            break
        print(f"{diff / runs:+8.2f}/run  {diff:+7d}  {name}")
    out["types"] = {name: diff for name, diff in grown[:top] if diff > 0}
    return out


async def probe(warm: int, batches: list[int], capacity: int, top: int, traced: bool, trim: bool = False) -> dict:
    from agentgate import queue, service
    from agentgate.config import Settings
    from agentgate.models import WorkOrderRequest
    from agentgate.observability.tracing import temporal_interceptors
    from agentgate.temporal_client import connect
    from worker import build_workers
    from workflows.work_order import WorkOrderWorkflow

    with tempfile.TemporaryDirectory(prefix="agentgate-leak-") as raw:
        tmp = Path(raw)
        repo = make_repo(tmp / "repo")
        env = await start_temporal(tmp / "temporal.db")
        try:
            settings = Settings(
                home=tmp / "home",
                temporal_address=env.client.service_client.config.target_host,
                task_queue=f"leak-{uuid.uuid4().hex[:6]}",
                host_id="leak",
                max_concurrent_agents=capacity,
                max_concurrent_activities=max(20, 2 * capacity),
                capacity=capacity,
                heartbeat_seconds=1,
            )
            settings.home_dir.mkdir(parents=True, exist_ok=True)
            client = await connect(settings, interceptors=temporal_interceptors("agentgate-worker"))
            request = WorkOrderRequest.model_validate(order_body(repo, "true"))
            done = 0

            async def batch(count: int) -> None:
                nonlocal done
                begin = time.perf_counter()
                orders = [service.make_work_order(request) for _ in range(count)]
                for order in orders:
                    await service.start_work_order(client, settings, order)
                results = await asyncio.gather(
                    *(client.get_workflow_handle_for(WorkOrderWorkflow.run, o.id).result() for o in orders)
                )
                bad = [r for r in results if r.result != "passed"]
                if bad:
                    raise RuntimeError(f"{len(bad)} of {count} no-op runs did not pass, e.g. {bad[0].error}")
                done += count
                print(f"  {done} runs ({count} in {time.perf_counter() - begin:.0f} s)", flush=True)
                del orders, results

            workers = build_workers(client, settings)
            async with workers[0], workers[1], workers[2]:
                await queue.ensure_admission(client, settings)
                await queue.set_capacity(client, settings, capacity)
                print(f"warm-up: {warm} runs, RSS at start {rss_self_kib() / 1024:.1f} MiB", flush=True)
                await batch(warm)
                if traced:
                    tracemalloc.start(FRAMES)
                samples = [Sample(done, traced, trim)]
                for count in batches:
                    await batch(count)
                    samples.append(Sample(done, traced, trim))
            intervals = [report_interval(a, b, top) for a, b in zip(samples, samples[1:], strict=False)]
            return {
                "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
                "warm": warm,
                "tracemalloc_frames": FRAMES if traced else 0,
                "rss_mib": [
                    {
                        "runs": s.runs,
                        "rss_mib": round(s.rss_kib / 1024, 1),
                        "rss_trimmed_mib": (
                            round(s.rss_trimmed_kib / 1024, 1) if s.rss_trimmed_kib is not None else None
                        ),
                    }
                    for s in samples
                ],
                "intervals": intervals,
            }
        finally:
            await env.shutdown()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warm", type=int, default=30, help="runs before the first sample (fills caches)")
    ap.add_argument("--batches", default="100,100", help="runs between samples, comma-separated")
    ap.add_argument("--capacity", type=int, default=8, help="queue capacity and agent slots")
    ap.add_argument("--top", type=int, default=15, help="rows per table")
    ap.add_argument("--no-tracemalloc", action="store_true", help="RSS and object counts only, at full speed")
    ap.add_argument("--trim", action="store_true", help="also read RSS after glibc malloc_trim(0) at each sample")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args(argv)
    batches = [int(x) for x in args.batches.split(",") if x.strip()]
    result = asyncio.run(probe(args.warm, batches, args.capacity, args.top, not args.no_tracemalloc, args.trim))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
