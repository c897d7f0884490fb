"""The verify and feedback phases: run the gate plan, keep every output, explain failures.

The plan comes from the work order and the workspace (see agentgate.verification); the gate
commands run code the agent wrote, so they run in the verify phase's sandbox
(agentgate/sandbox/verify_phase.py, recorded in the report's `sandbox`);
checks judge the diff from the run's base commit to HEAD. The full output of each
command goes to `gate-<N>-<k>.log` (black-box checks: `blackbox-<N>-<k>.*.log`); the
report `verification-<N>.json` holds every check result, and the summary returned to
the workflow carries only bounded excerpts and references.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from temporalio import activity

from activities.deps import ActivityDeps
from activities.errors import app_error
from agentgate import git
from agentgate.events import RunEventLog
from agentgate.models import FeedbackInput, FeedbackResult, GateOutcome, VerificationSummary, VerifyInput, WorkOrder
from agentgate.observability.tracing import record_gate_check, traced_phase
from agentgate.verification.feedback import build_feedback, render_markdown
from agentgate.verification.plan import GatePlanError, VerificationOptions
from agentgate.verification.report import CheckResult, Level, VerificationReport
from agentgate.verification.runner import gate_environment, run_plan
from agentgate.verification.workspace import plan_for_workspace

__all__ = ["VerifyActivities", "gate_environment", "verification_options"]

FEEDBACK_MAX_CHARS = 16_000
SUMMARY_CHARS = 600


def verification_options(order: WorkOrder) -> VerificationOptions:
    """The order's verification settings, whether it carries them nested, flat, or not yet at all."""
    nested = getattr(order, "verification", None)
    if isinstance(nested, VerificationOptions):
        return nested
    return VerificationOptions(
        gate_plan_source=getattr(order, "gate_plan_source", None) or "auto",
        skip_levels=list(getattr(order, "skip_levels", None) or []),
        protected_paths=list(getattr(order, "protected_paths", None) or []),
    )


class VerifyActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self.deps = deps

    @activity.defn(name="verify")
    @traced_phase("verify")
    async def verify(self, inp: VerifyInput) -> VerificationSummary:
        ctx, n = inp.ctx, inp.iteration
        order = await self.deps.load_work_order(ctx, inp.work_order)
        store = self.deps.store
        ws = inp.workspace.path
        events = RunEventLog(store, ctx, iteration=n)
        opts = verification_options(order)
        sandbox = self._sandbox(ctx, order, ws)
        events.emit("phase_started", phase="verify", gates=len(order.gates), source=opts.gate_plan_source,
                    sandbox=sandbox.record()["description"])  # fmt: skip
        try:
            head = await git.head(ws)
            plan = await plan_for_workspace(
                ws,
                base=inp.workspace.base_commit,
                head=head,
                source=opts.gate_plan_source,
                inline_gates=order.gates,
                skip_levels=opts.skip_levels,
                protected_paths=opts.protected_paths,
            )
        except GatePlanError as exc:
            events.emit("phase_failed", phase="verify", error=str(exc))
            raise app_error("invalid_input", f"the gate plan is invalid: {exc}") from exc
        except git.GitError as exc:
            raise app_error("workspace_error", f"could not read the workspace for verification: {exc}") from exc
        store.persist_json(ctx, f"gate-plan-{n}.json", plan)

        done: list[CheckResult] = []

        def on_check(check: CheckResult) -> None:
            done.append(check)
            record_gate_check(check)
            events.emit(
                "gate_checked",
                gate=check.name,
                level=check.level.value,
                passed=check.passed,
                warning=check.warning or None,
                exit_code=check.exit_code,
                duration_ms=check.duration_ms,
                output_ref=check.output_ref,
            )

        beat = asyncio.create_task(self._heartbeat(done))
        try:
            report = await run_plan(
                plan,
                workspace=ws,
                base=inp.workspace.base_commit,
                head=head,
                iteration=n,
                store=store,
                ctx=ctx,
                env=gate_environment(ws, n, ctx.work_order_id),
                on_check=on_check,
                sandbox=sandbox,
            )
        except git.GitError as exc:
            raise app_error("workspace_error", f"could not diff the workspace: {exc}", retryable=True) from exc
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        report_ref = f"verification-{n}.json"
        store.persist_json(ctx, report_ref, report)
        events.emit(
            "phase_completed",
            phase="verify",
            passed=report.passed,
            failed_level=report.failed_level.value if report.failed_level else None,
            progress=report.progress,
            failed=[c.name for c in report.failures()],
        )
        return VerificationSummary(
            passed=report.passed,
            gates=[
                GateOutcome.model_validate({k: v for k, v in g.items() if k != "output_file"}) for g in report.gates
            ],
            report_ref=report_ref,
            progress=report.progress,
            failed_level=report.failed_level.value if report.failed_level else None,
            integrity_violations=report.integrity_violations,
            warnings=len(report.warnings),
            plan_source=report.plan_source,
            sandbox_provider=sandbox.provider,
            sandbox_network=sandbox.network,
        )

    def _sandbox(self, ctx, order: WorkOrder, workspace: str):
        """The gates' sandbox (agentgate/sandbox/verify_phase.py): they run code the agent wrote."""
        from agentgate.sandbox.base import SandboxUnavailable
        from agentgate.sandbox.policy import SandboxConfigError
        from agentgate.sandbox.session import session_home_path
        from agentgate.sandbox.verify_phase import GateSandbox

        settings = self.deps.settings
        try:
            sandbox = GateSandbox(workspace, order_policy=order.sandbox,
                                  home=session_home_path(settings.workspaces_dir, ctx.work_order_id, ctx.run_id),
                                  worker_home=os.environ.get("HOME"),
                                  default_provider=settings.sandbox_default_provider,
                                  hide=settings.service_state_dirs)  # fmt: skip
        except (SandboxUnavailable, SandboxConfigError, ValueError) as exc:
            raise app_error("invalid_input", f"sandbox: {exc}") from exc
        return sandbox

    async def _heartbeat(self, done: list[CheckResult]) -> None:
        while True:
            activity.heartbeat({"checks_done": len(done)})
            await asyncio.sleep(self.deps.settings.heartbeat_seconds)

    def _load_report(self, inp: FeedbackInput) -> VerificationReport:
        store, ctx = self.deps.store, inp.ctx
        try:
            return VerificationReport.model_validate(store.read_json(ctx, inp.verification.report_ref))
        except (OSError, ValueError):
            # No full report (written by an older worker, or lost): rebuild what the summary carries.
            checks = [
                CheckResult(
                    name=g.name,
                    level=Level(g.level) if g.level else Level.L1,
                    kind=g.kind or "test",
                    passed=g.passed,
                    command=g.command or None,
                    exit_code=g.exit_code,
                    timed_out=g.timed_out,
                    output_ref=g.output_ref,
                    excerpt=g.excerpt,
                    duration_ms=g.duration_ms,
                )
                for g in inp.verification.gates
            ]
            failed = next((c.level for c in checks if not c.passed), None)
            return VerificationReport(
                iteration=inp.iteration,
                passed=inp.verification.passed,
                plan_source=inp.verification.plan_source or "unknown",
                failed_level=failed,
                progress=inp.verification.progress or 0.0,
                checks=checks,
            )

    @activity.defn(name="feedback")
    @traced_phase("feedback")
    async def feedback(self, inp: FeedbackInput) -> FeedbackResult:
        ctx, n = inp.ctx, inp.iteration
        store = self.deps.store
        events = RunEventLog(store, ctx, iteration=n)
        events.emit("phase_started", phase="feedback")
        report = self._load_report(inp)

        def read_output(ref: str) -> str | None:
            return store.read_text(ctx, ref) if store.exists(ctx, ref) else None

        fb = build_feedback(report, read_output)
        store.persist_json(ctx, f"feedback-{n}.json", fb)
        # The next build reads it back: kept in a spill folder when the store cannot take it (counted).
        ref = f"feedback-{n}.md"
        store.keep_text(ctx, ref, render_markdown(fb, FEEDBACK_MAX_CHARS))
        summary = fb.summary if len(fb.summary) <= SUMMARY_CHARS else fb.summary[: SUMMARY_CHARS - 1] + "…"
        events.emit("phase_completed", phase="feedback", ref=ref, failures=len(fb.failures))
        return FeedbackResult(ref=ref, summary=summary)
