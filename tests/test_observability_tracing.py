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
