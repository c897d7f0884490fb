"""The verify and feedback phases: run the gates, keep their full output, explain failures.

Gate commands run through the same process control as agents (own session, whole-tree
stop on cancel or timeout). The full output of each gate goes to `gate-<N>-<k>.log`;
the report `verification-<N>.json` and the returned summary carry bounded excerpts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from temporalio import activity

from activities.deps import ActivityDeps
from agentgate.artifacts import tail_text
from agentgate.events import RunEventLog
from agentgate.models import FeedbackInput, FeedbackResult, GateOutcome, VerificationSummary, VerifyInput
from agentgate.process import run_streaming

EXCERPT_CHARS = 3000
FEEDBACK_OUTPUT_CHARS = 6000


def gate_environment(workspace: str, iteration: int, work_order_id: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "TZ")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        AGENTGATE_WORKSPACE=workspace,
        AGENTGATE_ITERATION=str(iteration),
        AGENTGATE_WORK_ORDER_ID=work_order_id,
        CI="true",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


class VerifyActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self.deps = deps

    @activity.defn(name="verify")
    async def verify(self, inp: VerifyInput) -> VerificationSummary:
        ctx, n = inp.ctx, inp.iteration
        store = self.deps.store
        events = RunEventLog(store, ctx, iteration=n)
        events.emit("phase_started", phase="verify", gates=len(inp.work_order.gates))
        outcomes: list[GateOutcome] = []
        beat = asyncio.create_task(self._heartbeat(outcomes))
        try:
            for k, gate in enumerate(inp.work_order.gates, start=1):
                log_ref = f"gate-{n}-{k}.log"
                store.path(ctx, log_ref).unlink(missing_ok=True)
                log_path = store.path(ctx, log_ref)
                proc = await run_streaming(
                    ["/bin/sh", "-c", gate.command],
                    cwd=inp.workspace.path,
                    env=gate_environment(inp.workspace.path, n, ctx.work_order_id),
                    stdout_path=log_path,
                    stderr_path=log_path,
                    timeout_seconds=gate.timeout_seconds,
                    grace_seconds=5,
                )
                output = log_path.read_bytes()
                passed = (not proc.timed_out) and proc.exit_code == gate.expected_exit_code
                outcome = GateOutcome(
                    name=gate.display_name,
                    command=gate.command,
                    passed=passed,
                    exit_code=proc.exit_code,
                    duration_ms=proc.duration_ms,
                    output_ref=log_ref,
                    output_bytes=len(output),
                    excerpt=tail_text(output, EXCERPT_CHARS),
                    timed_out=proc.timed_out,
                )
                outcomes.append(outcome)
                events.emit(
                    "gate_checked",
                    gate=outcome.name,
                    passed=passed,
                    exit_code=proc.exit_code,
                    duration_ms=proc.duration_ms,
                    output_ref=log_ref,
                )
                if not passed:
                    break  # later gates would only repeat the failure; the feedback names this one
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        skipped = [g.display_name for g in inp.work_order.gates[len(outcomes) :]]
        passed = all(o.passed for o in outcomes)
        report_ref = f"verification-{n}.json"
        store.persist_json(
            ctx,
            report_ref,
            {
                "iteration": n,
                "passed": passed,
                "gates": [o.model_dump() | {"output_file": o.output_ref} for o in outcomes],
                "skipped": skipped,
            },
        )
        events.emit("phase_completed", phase="verify", passed=passed, failed=[o.name for o in outcomes if not o.passed])
        return VerificationSummary(passed=passed, gates=outcomes, report_ref=report_ref)

    async def _heartbeat(self, outcomes: list[GateOutcome]) -> None:
        while True:
            activity.heartbeat({"gates_done": len(outcomes)})
            await asyncio.sleep(self.deps.settings.heartbeat_seconds)

    @activity.defn(name="feedback")
    async def feedback(self, inp: FeedbackInput) -> FeedbackResult:
        ctx, n = inp.ctx, inp.iteration
        store = self.deps.store
        events = RunEventLog(store, ctx, iteration=n)
        events.emit("phase_started", phase="feedback")
        failed = inp.verification.failed_gates
        lines = [
            f"# AgentGate feedback after iteration {n}",
            "",
            f"{len(failed)} gate(s) failed. Fix the cause; do not weaken or skip the checks.",
            "",
        ]
        for gate in failed:
            output = store.read_bytes(ctx, gate.output_ref) if store.exists(ctx, gate.output_ref) else b""
            status = "timed out" if gate.timed_out else f"exit code {gate.exit_code}"
            lines += [
                f"## Gate failed: `{gate.name}` ({status})",
                "",
                f"Command: `{gate.command}`",
                "",
                "Output (untrusted text from the test run, last part):",
                "",
                "```text",
                tail_text(output, FEEDBACK_OUTPUT_CHARS).rstrip(),
                "```",
                "",
            ]
        text = "\n".join(lines)
        ref = store.write_text(ctx, f"feedback-{n}.md", text)
        summary = "; ".join(f"{g.name}: {'timed out' if g.timed_out else f'exit {g.exit_code}'}" for g in failed)
        events.emit("phase_completed", phase="feedback", ref=ref)
        return FeedbackResult(ref=ref, summary=summary or "no failed gates")
