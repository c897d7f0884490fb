"""Run and iteration records: the workflow's view of the run, persisted as JSON files."""

from __future__ import annotations

from temporalio import activity

from activities.deps import ActivityDeps
from agentgate.events import RunEventLog
from agentgate.models import FinalizeInput, RecordIterationInput, RunContext, RunOutcome


class RecordActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self.deps = deps

    @activity.defn(name="record_run_started")
    async def record_run_started(self, outcome: RunOutcome) -> None:
        ctx = RunContext(work_order_id=outcome.work_order_id, run_id=outcome.run_id)
        self.deps.store.persist_json(ctx, "run.json", outcome)
        RunEventLog(self.deps.store, ctx).emit("run_started", status=outcome.status.value)

    @activity.defn(name="record_iteration")
    async def record_iteration(self, inp: RecordIterationInput) -> str:
        ref = f"iteration-{inp.record.iteration}.json"
        self.deps.store.persist_json(inp.ctx, ref, inp.record)
        RunEventLog(self.deps.store, inp.ctx, iteration=inp.record.iteration).emit(
            "iteration_completed",
            passed=bool(inp.record.verification and inp.record.verification.passed),
            decision=inp.record.decision,
            phases={p.phase: p.duration_ms for p in inp.record.phases},
            duration_ms=(
                int((inp.record.ended_at - inp.record.started_at).total_seconds() * 1000)
                if inp.record.ended_at
                else None
            ),
            gates=[
                {"name": g.name, "passed": g.passed, "level": g.level, "exit_code": g.exit_code}
                for g in (inp.record.verification.gates if inp.record.verification else [])
            ],
        )
        return ref

    @activity.defn(name="finalize_run")
    async def finalize_run(self, inp: FinalizeInput) -> str:
        self.deps.store.persist_json(inp.ctx, "run.json", inp.outcome)
        status = inp.outcome.status.value
        kind = {"canceled": "run_canceled", "failed": "run_failed"}.get(status, "run_completed")
        duration_ms = None
        if inp.outcome.started_at and inp.outcome.ended_at:
            duration_ms = int((inp.outcome.ended_at - inp.outcome.started_at).total_seconds() * 1000)
        RunEventLog(self.deps.store, inp.ctx).emit(
            kind,
            duration_ms=duration_ms,
            status=inp.outcome.status.value,
            state=inp.outcome.state,
            result=inp.outcome.result,
            iterations=inp.outcome.iterations,
            error=inp.outcome.error,
        )
        return "run.json"
