"""Typed events, the emitter's subscriber isolation, and events.jsonl numbering across processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from agentgate.artifacts import ArtifactStore
from agentgate.events import EVENTS_REF, RunEventLog
from agentgate.models import RunContext
from agentgate.observability import emitter as em
from agentgate.observability import events as ev
from agentgate.observability import metrics

CTX = RunContext(work_order_id="wo_events00001", run_id="run-1")


def lines(store: ArtifactStore, ctx: RunContext = CTX) -> list[dict]:
    return [json.loads(x) for x in store.read_text(ctx, EVENTS_REF).splitlines() if x.strip()]


def test_every_typed_event_round_trips_through_its_discriminator():
    samples = {
        "run_started": {"status": "running", "max_iterations": 3},
        "run_completed": {"status": "succeeded", "result": "passed", "iterations": 2},
        "run_canceled": {"status": "canceled", "reason": "user"},
        "run_failed": {"status": "failed", "error": "boom", "error_type": "system_error"},
        "iteration_started": {"max_iterations": 3},
        "iteration_completed": {
            "passed": False,
            "phases": {"build": 1200, "verify": 300},
            "gates": [{"name": "pytest", "passed": False, "level": "L1", "exit_code": 1}],
        },
        "phase_started": {"phase": "build"},
        "phase_completed": {"phase": "build", "success": True, "duration_ms": 5},
        "gate_checked": {"gate": "pytest", "passed": True, "level": "L1"},
        "delivery_started": {"mode": "local", "branch": "agentgate/x"},
        "delivery_completed": {"mode": "local", "commit": "abc", "success": True},
        "agent_message": {"text": "hello"},
        "agent_tool_call": {"tool": {"name": "Bash", "input": {"command": "ls"}}},
        "agent_tool_result": {"tool": {"name": "Bash", "output": "a\nb"}},
        "agent_usage": {"tokens": {"input": 1, "output": 2}, "cost_usd": 0.01},
        "agent_output": {"text": "line", "stream": "stdout"},
    }
    assert set(samples) == set(ev.EVENT_TYPES)
    for seq, (type_, fields) in enumerate(samples.items(), start=1):
        event = ev.make_event(type_, work_order_id="wo_x", run_id="r", iteration=1, **fields)
        assert type(event) is ev.EVENT_TYPES[type_]
        event.seq = seq
        record = json.loads(event.to_json())
        assert list(record)[:2] == ["seq", "type"]
        assert record["correlation_id"] == "r"  # no trace: the run id correlates
        back = ev.parse_event(record)
        assert type(back) is type(event) and back.seq == seq
        assert back.model_dump() == event.model_dump()
    assert ev.parse_event({"type": "run_failed", "work_order_id": "w", "run_id": "r"}).terminal


def test_old_and_unknown_lines_still_load():
    old = {
        "seq": 4,
        "type": "phase_completed",
        "ts": "2026-01-01T00:00:00+00:00",
        "work_order_id": "w",
        "run_id": "r",
        "phase": "verify",
        "passed": True,
        "failed": [],
    }
    event = ev.parse_event(old)
    assert isinstance(event, ev.PhaseCompleted) and event.correlation_id is None
    assert event.model_extra == {"failed": []}

    unknown = ev.parse_event('{"seq": 9, "type": "parser_error", "error": "x"}')
    assert isinstance(unknown, ev.GenericEvent) and unknown.type == "parser_error" and unknown.seq == 9

    misfit = ev.parse_event({"seq": 2, "type": "gate_checked", "work_order_id": "w", "run_id": "r"})
    assert isinstance(misfit, ev.GenericEvent) and misfit.type == "gate_checked"
    with pytest.raises(ValueError):
        ev.parse_event({"no": "type"})


def test_pydantic_values_are_stored_as_plain_json():
    from agentgate.models import TokenUsage

    event = ev.make_event("phase_completed", work_order_id="w", run_id="r", phase="build", tokens=TokenUsage(input=3))
    assert isinstance(event, ev.PhaseCompleted) and event.tokens["input"] == 3


def test_long_agent_text_is_bounded_in_the_stream():
    event = ev.make_event("agent_output", work_order_id="w", run_id="r", text="x" * (ev.MAX_TEXT_CHARS + 10))
    assert len(event.text) == ev.MAX_TEXT_CHARS and event.truncated is True
    assert event.model_extra["text_chars"] == ev.MAX_TEXT_CHARS + 10


def test_a_failing_subscriber_stops_neither_the_others_nor_the_caller(tmp_path):
    store = ArtifactStore(tmp_path)
    seen: list[ev.ProgressEvent] = []

    def broken(event):
        raise RuntimeError("dashboard down")

    def probe(event):
        seen.append(event)

    emitter = em.EventEmitter([em.JsonlSubscriber(store), broken, probe])
    before = metrics.SUBSCRIBER_ERRORS.labels(subscriber="broken")._value.get()
    for i in range(3):
        emitter.emit(ev.make_event("agent_output", work_order_id=CTX.work_order_id, run_id=CTX.run_id, text=str(i)))
    assert [e.seq for e in seen] == [1, 2, 3]
    assert emitter.errors == 3
    assert metrics.SUBSCRIBER_ERRORS.labels(subscriber="broken")._value.get() - before == 3
    assert [r["seq"] for r in lines(store)] == [1, 2, 3]


def test_process_wide_subscribers_are_isolated_too(tmp_path):
    store = ArtifactStore(tmp_path)
    got = []
    remove_bad = em.add_subscriber(lambda e: 1 / 0)
    remove_good = em.add_subscriber(got.append)
    try:
        RunEventLog(store, CTX, iteration=1).emit("phase_started", phase="build", driver="command")
    finally:
        remove_bad()
        remove_good()
    assert [e.type for e in got] == ["phase_started"]
    assert got[0].seq == 1 and got[0].iteration == 1 and got[0].model_extra == {"driver": "command"}


def test_event_log_never_raises_and_keeps_numbering_when_the_store_is_broken(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = ArtifactStore(blocker / "runs")  # mkdir under a regular file fails
    got = []
    remove = em.add_subscriber(got.append)
    try:
        log = RunEventLog(store, CTX)
        log.emit("run_started", status="running")
        log.emit("run_completed", status="succeeded", result="passed")
    finally:
        remove()
    assert store.persist_failures == 2
    assert [e.seq for e in got] == [1, 2]  # the live stream still ordered


def test_numbering_continues_after_a_torn_line_and_long_lines(tmp_path):
    store = ArtifactStore(tmp_path)
    RunEventLog(store, CTX).emit("agent_output", text="y" * 7000)
    path = store.path(CTX, EVENTS_REF)
    big = json.dumps({"seq": 2, "type": "agent_output", "text": "z" * 200_000})
    with open(path, "a") as fh:
        fh.write(big + "\n")
        fh.write('{"seq": 3, "type": "agent_out')  # a writer died mid-line
    RunEventLog(ArtifactStore(tmp_path), CTX).emit("run_completed", status="succeeded")
    raw = path.read_text().splitlines()
    assert raw[2] == '{"seq": 3, "type": "agent_out'
    assert json.loads(raw[3])["seq"] == 3 and json.loads(raw[3])["type"] == "run_completed"
    assert em.last_sequence(path) == 3


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from agentgate.artifacts import ArtifactStore
    from agentgate.events import RunEventLog
    from agentgate.models import RunContext
    store = ArtifactStore(Path(sys.argv[1]))
    log = RunEventLog(store, RunContext(work_order_id="wo_events00001", run_id="run-1"))
    for i in range(int(sys.argv[2])):
        log.emit("agent_output", text=f"{sys.argv[3]}-{i}")
    """
)


def test_writers_in_several_processes_never_reuse_a_number(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), "150", name]) for name in ("a", "b", "c")]
    for p in procs:
        assert p.wait(timeout=60) == 0
    records = lines(ArtifactStore(tmp_path))
    assert len(records) == 450
    assert [r["seq"] for r in records] == list(range(1, 451))
