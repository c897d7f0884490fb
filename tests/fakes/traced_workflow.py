"""A small workflow + activity for the tracing test: the activity opens our phase and agent spans."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from agentgate.models import AgentSummary, TokenUsage


@activity.defn(name="traced_build")
async def traced_build(iteration: int) -> AgentSummary:
    from agentgate.observability.tracing import agent_span, phase_span, record_agent_result

    info = activity.info()
    with phase_span("build", work_order_id=info.workflow_id, run_id=info.workflow_run_id, iteration=iteration):
        with agent_span("claude-code", model="claude-sonnet-4", iteration=iteration) as span:
            summary = AgentSummary(
                success=True,
                exit_code=0,
                duration_ms=1234,
                model="claude-sonnet-4",
                turns=3,
                tokens=TokenUsage(input=1200, output=340),
                cost_usd=0.0123,
                result_ref="agent-1.json",
                stdout_ref="agent-1.stdout.log",
                stderr_ref="agent-1.stderr.log",
            )
            record_agent_result(span, summary)
    return summary


@workflow.defn(name="TracedWorkflow")
class TracedWorkflow:
    @workflow.run
    async def run(self, iteration: int) -> int:
        result = await workflow.execute_activity(traced_build, iteration, start_to_close_timeout=timedelta(seconds=30))
        return result.tokens.input
