"""The artifact store never fails a run: unwritable folders, large outputs, corrupt and old records."""

from __future__ import annotations

import json

from agentgate.artifacts import QUARANTINE_DIR, ArtifactStore
from agentgate.models import IterationRecord, RunContext, RunOutcome
from agentgate.observability import metrics

CTX = RunContext(work_order_id="wo_store000001", run_id="run-1")


def test_unwritable_store_returns_none_counts_and_does_not_raise(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a regular file where the runs folder should be")
    store = ArtifactStore(blocker / "runs")
    before = metrics.PERSIST_FAILURES._value.get()
    assert store.persist_json(CTX, "run.json", {"state": "queued"}) is None
    assert store.persist_json(CTX, "iteration-1.json", {"iteration": 1}) is None
    assert store.persist_failures == 2
    assert metrics.PERSIST_FAILURES._value.get() - before == 2
    out = store.store_output(CTX, "agent-1.stdout.log", b"x" * 10)  # still describes what it could not keep
    assert out.bytes == 10 and store.persist_failures == 3


def test_large_output_goes_to_a_file_and_json_gets_a_bounded_excerpt(tmp_path):
    store = ArtifactStore(tmp_path)
    data = b"".join(f"line {i}\n".encode() for i in range(100_000))
    out = store.store_output(CTX, "gate-1-1.log", data, excerpt_bytes=1000)
    assert store.read_bytes(CTX, "gate-1-1.log") == data
    assert out.ref == "gate-1-1.log" and out.bytes == len(data) and out.truncated is True
    assert out.excerpt_bytes == 1000 and out.excerpt.endswith("line 99999\n")
    small = store.store_output(CTX, "small.log", "ok\n")
    assert small.truncated is False and small.excerpt == "ok\n" and small.bytes == 3
    # A file streamed to disk by a process is described without reading it whole.
    described = store.describe_output(CTX, "gate-1-1.log", excerpt_bytes=20)
    assert described.bytes == len(data) and described.truncated and described.excerpt == data[-20:].decode()
    assert store.describe_output(CTX, "missing.log").bytes == 0
    assert json.loads(out.model_dump_json())["truncated"] is True


def test_old_run_json_without_new_fields_still_loads(tmp_path):
    store = ArtifactStore(tmp_path)
    old = {
        "work_order_id": CTX.work_order_id,
        "run_id": CTX.run_id,
        "status": "failed",
        "state": "failed",
        "result": "failed_build",
        "error": "Build failed",
    }
    store.write_json(CTX, "run.json", old)
    outcome = store.load_model(CTX, "run.json", RunOutcome)
    assert outcome is not None and outcome.error == "Build failed"
    assert outcome.build_error is None and outcome.history == [] and outcome.tokens.total == 0

    old_iteration = {"iteration": 1, "started_at": "2025-01-01T00:00:00Z"}
    store.write_json(CTX, "iteration-1.json", old_iteration)
    assert store.load_model(CTX, "iteration-1.json", IterationRecord).iteration == 1


def test_newer_fields_are_dropped_not_refused(tmp_path):
    store = ArtifactStore(tmp_path)
    newer = {
        "work_order_id": CTX.work_order_id,
        "run_id": CTX.run_id,
        "status": "running",
        "state": "building",
        "strategy_state": {"x": 1},
        "history": [{"iteration": 1, "started_at": "2025-01-01T00:00:00Z", "harness_profile": "default"}],
    }
    store.write_json(CTX, "run.json", newer)
    outcome = store.load_model(CTX, "run.json", RunOutcome)
    assert outcome is not None and outcome.history[0].iteration == 1
    assert store.exists(CTX, "run.json")  # not quarantined


def test_corrupt_json_is_quarantined_with_a_reason(tmp_path):
    store = ArtifactStore(tmp_path)
    store.write_text(CTX, "run.json", '{"work_order_id": "wo_sto')
    assert store.load_model(CTX, "run.json", RunOutcome) is None
    assert not store.exists(CTX, "run.json")
    moved = list((tmp_path / QUARANTINE_DIR / CTX.work_order_id / CTX.run_id).iterdir())
    data = [p for p in moved if not p.name.endswith(".reason")]
    reasons = [p for p in moved if p.name.endswith(".reason")]
    assert len(data) == 1 and data[0].read_text() == '{"work_order_id": "wo_sto'
    assert len(reasons) == 1 and "not valid JSON" in reasons[0].read_text()
    assert store.list_runs(CTX.work_order_id) == [CTX.run_id]
    assert store.load_model(CTX, "run.json", RunOutcome) is None  # missing now: no error either


def test_a_record_that_does_not_fit_is_quarantined(tmp_path):
    store = ArtifactStore(tmp_path)
    store.write_json(CTX, "run.json", {"status": "nonsense"})
    assert store.load_model(CTX, "run.json", RunOutcome) is None
    assert next((tmp_path / QUARANTINE_DIR).rglob("*.reason")).read_text().count("does not fit RunOutcome") == 1
