"""Log lines carry the run's identifiers: from log_context, the current span, and a running activity."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import uuid

import pytest
from opentelemetry.sdk.trace import TracerProvider
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from agentgate.observability.logging import configure_logging, log_context


@pytest.fixture
def capture():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    handler = configure_logging("DEBUG", json=True, stream=stream)
    yield stream
    root.removeHandler(handler)
    root.handlers[:], root.level = saved[0], saved[1]


def records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_bound_context_and_trace_ids(capture):
    tracer = TracerProvider().get_tracer("test")
    log = logging.getLogger("agentgate.test")
    with log_context(work_order_id="wo_log0000001", run_id="run-9", iteration=2, phase="verify"):
        with tracer.start_as_current_span("phase verify") as span:
            log.info("gate %s failed", "pytest", extra={"gate": "pytest"})
    log.warning("outside")
    inside, outside = records(capture)
    ctx = span.get_span_context()
    assert (
        inside["message"] == "gate pytest failed" and inside["level"] == "INFO" and inside["logger"] == "agentgate.test"
    )
    assert inside["work_order_id"] == "wo_log0000001" and inside["run_id"] == "run-9"
    assert inside["iteration"] == 2 and inside["phase"] == "verify" and inside["gate"] == "pytest"
    assert inside["trace_id"] == format(ctx.trace_id, "032x") and inside["span_id"] == format(ctx.span_id, "016x")
    assert "ts" in inside
    assert "work_order_id" not in outside and "trace_id" not in outside


async def test_inside_an_activity_the_workflow_ids_are_used(capture):
    wf_id = f"wo_{uuid.uuid4().hex[:12]}"

    @activity.defn
    async def act() -> None:
        logging.getLogger("agentgate.activity").info("building")

    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=wf_id, workflow_run_id="run-x", activity_type="run_agent")
    await env.run(act)
    (line,) = [r for r in records(capture) if r["message"] == "building"]
    assert line["work_order_id"] == wf_id and line["run_id"] == "run-x" and line["activity"] == "run_agent"


def test_human_format_and_idempotence():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("INFO", json=False, stream=stream)
        handler = configure_logging("INFO", json=False, stream=stream)  # replaces, not duplicates
        assert sum(1 for h in root.handlers if getattr(h, "_agentgate_handler", False)) == 1
        with log_context(work_order_id="wo_h", run_id="r1"):
            logging.getLogger("agentgate.x").info("hello")
        line = stream.getvalue().strip()
        assert line.endswith("agentgate.x: hello [wo=wo_h run=r1]"), line
        root.removeHandler(handler)
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
