"""A long-lived worker keeps no per-run state without a bound (issue #8: worker memory per run).

Each table that is keyed by run (the events.jsonl sequence cache, the live stream's fallback
sequence numbers, the redactors' per-run secret names, the metrics' open runs and phases) is
driven here with more distinct runs than its bound, through the real emitter on a real artifact
store, and must stay at its bound; the Prometheus series must not multiply with runs (no run or
work-order id in a label). `bench/leak_probe.py` measures the same tables on a real worker.
"""

from __future__ import annotations

from pathlib import Path

from agentgate import artifacts
from agentgate.artifacts import ArtifactStore
from agentgate.events import RunEventLog
from agentgate.models import RunContext
from agentgate.observability import emitter, metrics


def _series() -> int:
    from prometheus_client.metrics import MetricWrapperBase

    return sum(len(m._metrics) for m in vars(metrics).values() if isinstance(m, MetricWrapperBase) and m._labelnames)


def test_per_run_tables_stay_bounded_after_many_distinct_runs(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "runs")
    first = RunEventLog(store, RunContext(work_order_id="wo_first", run_id="run-first"))
    first.emit("phase_started", phase="build")
    first.emit("phase_completed", phase="build", duration_ms=5)
    first.emit("run_completed", status="passed", result="passed", duration_ms=10)
    series = _series()
    sub = emitter.metrics_subscriber()  # process-wide: other tests' unfinished runs may already be in it
    before = {name: set(getattr(sub, name)) for name in ("_run_started", "_active", "_phase_started")}

    runs = 1_100  # more than every bound below
    for i in range(runs):
        log = RunEventLog(store, RunContext(work_order_id=f"wo_{i:05d}", run_id=f"run-{i:05d}"), iteration=1)
        log.emit("run_started", status="running")
        log.emit("phase_started", phase="build")
        log.emit("phase_completed", phase="build", duration_ms=5)
        log.emit("run_completed", status="passed", result="passed", duration_ms=10)

    em = emitter.emitter_for(store)
    jsonl = next(s for s in em.subscribers if isinstance(s, emitter.JsonlSubscriber))
    assert len(jsonl._cache) == 512
    assert len(em._fallback_seq) == 1000
    assert len(artifacts._REDACTORS._names) <= 256
    assert len(artifacts._REDACTORS._pinned) <= 256
    for name, keys in before.items():  # every run of ours ended: none of them is left open
        assert set(getattr(sub, name)) <= keys, (name, sorted(set(getattr(sub, name)) - keys)[:5])
    assert _series() == series, "a metric label took a per-run value: one Prometheus series per run"
    # the newest run is still served from the caches, the oldest was dropped
    assert f"run-{runs - 1:05d}" in em._fallback_seq and "run-00000" not in em._fallback_seq


def test_open_runs_whose_end_never_arrives_are_bounded() -> None:
    """A crashed attempt's run_started without its end must not keep memory forever."""
    from datetime import UTC, datetime

    from agentgate.observability import events as ev

    sub = metrics.MetricsSubscriber(track_active=False, max_open=100)
    now = datetime.now(UTC)
    for i in range(1_000):
        sub(ev.RunStarted(work_order_id=f"wo_{i}", run_id=f"r{i}", ts=now))
        sub(ev.PhaseStarted(work_order_id=f"wo_{i}", run_id=f"r{i}", iteration=1, phase="build", ts=now))
    assert len(sub._run_started) <= 100
    assert len(sub._phase_started) <= 100
