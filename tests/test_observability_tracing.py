"""Traces leave the process over real OTLP/HTTP and form one tree across client, workflow and activity."""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from agentgate.observability import tracing
from tests.fakes.otlp_receiver import OtlpReceiver
from tests.fakes.traced_workflow import TracedWorkflow, traced_build


@pytest.fixture
def receiver():
    rx = OtlpReceiver().start()
    yield rx
    rx.stop()


def test_tracing_is_off_by_default():
    assert tracing.tracing_enabled({}) is False
    assert tracing.setup_tracing(env={}, set_global=False) is None
    assert tracing.tracing_enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing.tracing_enabled({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"})
    assert tracing.tracing_enabled({"OTEL_TRACES_EXPORTER": "otlp"})
    assert not tracing.tracing_enabled({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    assert not tracing.tracing_enabled({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})


async def test_span_tree_from_client_to_activity(skip_env, receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "agentgate-test")
    setup = tracing.setup_tracing(set_global=False)
    assert setup is not None
    client = Client(**{**skip_env.client.config(), "interceptors": [setup.interceptor]})
    queue = f"traced-{uuid.uuid4().hex[:8]}"
    try:
        # The worker inherits the interceptor from its client (TracingInterceptor is both kinds).
        async with Worker(client, task_queue=queue, workflows=[TracedWorkflow], activities=[traced_build]):
            result = await client.execute_workflow(
                TracedWorkflow.run, 1, id=f"wo_trace{uuid.uuid4().hex[:12]}", task_queue=queue
            )
        assert result == 1200
        setup.provider.force_flush()
    finally:
        setup.shutdown()

    names = {
        "StartWorkflow:TracedWorkflow",
        "RunWorkflow:TracedWorkflow",
        "StartActivity:traced_build",
        "RunActivity:traced_build",
        "phase build",
        "invoke_agent claude-code",
    }
    assert receiver.wait_for(lambda spans: names <= {s.name for s in spans}), [s.name for s in receiver.spans]
    start_wf = receiver.by_name("StartWorkflow:TracedWorkflow")
    run_wf = receiver.by_name("RunWorkflow:TracedWorkflow")
    start_act = receiver.by_name("StartActivity:traced_build")
    run_act = receiver.by_name("RunActivity:traced_build")
    phase = receiver.by_name("phase build")
    agent = receiver.by_name("invoke_agent claude-code")

    # TracingInterceptor's workflow-side spans (RunWorkflow, StartActivity, CompleteWorkflow) are
    # zero-length markers whose parent is the workflow's incoming context, i.e. StartWorkflow; the
    # activity side nests properly, and our phase/agent spans nest under RunActivity.
    chain = [start_wf, run_wf, start_act, run_act, phase, agent]
    assert len({s.trace_id for s in chain}) == 1
    assert start_wf.parent_span_id == ""
    assert run_wf.parent_span_id == start_wf.span_id
    assert start_act.parent_span_id == start_wf.span_id
    assert run_act.parent_span_id == start_act.span_id
    assert phase.parent_span_id == run_act.span_id
    assert agent.parent_span_id == phase.span_id
    assert {s.service_name for s in chain} == {"agentgate-test"}

    assert phase.attributes["agentgate.phase"] == "build"
    assert phase.attributes["agentgate.iteration"] == 1
    assert agent.attributes["gen_ai.system"] == "claude-code"
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.request.model"] == "claude-sonnet-4"
    assert agent.attributes["gen_ai.usage.input_tokens"] == 1200
    assert agent.attributes["gen_ai.usage.output_tokens"] == 340
    assert agent.attributes["agentgate.agent.cost_usd"] == pytest.approx(0.0123)
    assert agent.attributes["agentgate.agent.turns"] == 3


async def test_every_phase_of_a_real_two_iteration_run_has_its_span(
    skip_env, settings, sample_repo, receiver, monkeypatch
):
    """The real WorkOrderWorkflow and activities: phase spans with ids, gate and agent spans, typed errors."""
    import json
    from datetime import UTC, datetime

    from agentgate.artifacts import ArtifactStore
    from agentgate.demo.sample_repo import GATE_COMMAND, TASK_PROMPT
    from agentgate.ids import new_work_order_id
    from agentgate.models import RunContext, WorkOrder
    from tests.conftest import DEMO_AGENT
    from worker import build_workers
    from workflows.work_order import WorkOrderWorkflow

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    setup = tracing.setup_tracing(set_global=False)
    assert setup is not None
    client = Client(**{**skip_env.client.config(), "interceptors": [setup.interceptor]})

    def order(path) -> WorkOrder:
        return WorkOrder(id=new_work_order_id(), created_at=datetime.now(UTC), task_prompt=TASK_PROMPT,
                         workspace_source={"type": "local", "path": str(path)},
                         agent={"driver": "command", "command": DEMO_AGENT}, gates=[GATE_COMMAND])  # fmt: skip

    good, bad = order(sample_repo), order(settings.home_dir)  # a folder that is no git repository
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    try:
        workers = build_workers(client, settings)
        async with workers[0], workers[1], workers[2]:
            outcome = await client.execute_workflow(
                WorkOrderWorkflow.run, good, id=good.id, task_queue=settings.task_queue
            )
            failed = await client.execute_workflow(
                WorkOrderWorkflow.run, bad, id=bad.id, task_queue=settings.task_queue
            )
        setup.provider.force_flush()
    finally:
        setup.shutdown()
    assert outcome.result == "passed" and outcome.iterations == 2
    assert failed.status.value == "failed"

    def phases(spans, wo_id, phase):
        return [s for s in spans if s.name == f"phase {phase}" and s.attributes["agentgate.work_order_id"] == wo_id]

    def complete(spans) -> bool:
        return (
            len(phases(spans, good.id, "build")) == 2
            and len(phases(spans, good.id, "deliver")) >= 1
            and len(phases(spans, bad.id, "prepare")) >= 1
        )

    assert receiver.wait_for(complete), sorted({s.name for s in receiver.spans})
    spans = receiver.spans
    by_id = {s.span_id: s for s in spans}
    counts = {p: len(phases(spans, good.id, p)) for p in ("prepare", "build", "snapshot", "verify", "feedback")}
    assert counts == {"prepare": 1, "build": 2, "snapshot": 2, "verify": 2, "feedback": 1}

    mine = [s for s in spans if s.name.startswith("phase ") and s.attributes["agentgate.work_order_id"] == good.id]
    assert len({s.trace_id for s in mine}) == 1, "one trace from the client's StartWorkflow to every phase"
    for span in mine:
        assert span.attributes["agentgate.run_id"] == outcome.run_id
        parent = by_id[span.parent_span_id]
        assert parent.name == f"RunActivity:{span.attributes['agentgate.operation']}", (span.name, parent.name)
    for phase in ("build", "snapshot", "verify"):
        assert sorted(s.attributes["agentgate.iteration"] for s in phases(spans, good.id, phase)) == [1, 2]

    # Iteration 1's gate failed: the verify phase and its gate span carry the classified type.
    verify = {s.attributes["agentgate.iteration"]: s for s in phases(spans, good.id, "verify")}
    assert verify[1].attributes["agentgate.passed"] is False and verify[1].attributes["error.type"] == "test_failed"
    assert verify[1].status_code == 2  # STATUS_CODE_ERROR
    assert verify[2].attributes["agentgate.passed"] is True and "error.type" not in verify[2].attributes
    gates = {n: [s for s in spans if s.name.startswith("gate ") and s.parent_span_id == v.span_id]
             for n, v in verify.items()}  # fmt: skip
    failed_gates = [g for g in gates[1] if not g.attributes["agentgate.gate.passed"]]
    assert [g.attributes["error.type"] for g in failed_gates] == ["test_failed"] and failed_gates[0].status_code == 2
    assert gates[2] and all(g.attributes["agentgate.gate.passed"] for g in gates[2])

    # The agent CLI's span sits inside its build phase with the GenAI attributes.
    for build in phases(spans, good.id, "build"):
        agent = [s for s in spans if s.parent_span_id == build.span_id and s.name == "invoke_agent command"]
        assert len(agent) == 1 and agent[0].attributes["gen_ai.operation.name"] == "invoke_agent"
        assert agent[0].attributes["agentgate.agent.exit_code"] == 0
        assert build.attributes["agentgate.success"] is True

    # A phase that raises: the span is an error with the run's error type.
    prepare = phases(spans, bad.id, "prepare")[-1]
    assert prepare.status_code == 2 and prepare.attributes["error.type"] == "workspace_error"

    # Events emitted inside a phase carry the trace id as their correlation id.
    store = ArtifactStore(settings.runs_dir)
    ctx = RunContext(work_order_id=good.id, run_id=outcome.run_id)
    events = [json.loads(x) for x in store.read_text(ctx, "events.jsonl").splitlines()]
    gate_events = [e for e in events if e["type"] == "gate_checked"]
    assert gate_events and {e["correlation_id"] for e in gate_events} == {mine[0].trace_id}
