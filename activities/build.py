"""The build phase: run the agent CLI in the workspace, record everything, stop it for real.

The activity heartbeats with progress while the agent runs; Temporal delivers
cancellation through that heartbeat, and `run_streaming` then stops the whole process
tree before this activity returns (the workflow waits for that: WAIT_CANCELLATION_COMPLETED).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from temporalio import activity

from activities.deps import ActivityDeps
from activities.errors import app_error
from agentgate.agents import UnknownDriverError, get_driver
from agentgate.agents.base import AgentEvent, AgentRequest, AgentResult
from agentgate.artifacts import tail_text
from agentgate.events import RunEventLog
from agentgate.models import AgentSummary, BuildError, BuildInput, ErrorType
from agentgate.process import ProcessOutcome, run_streaming

EXCERPT_CHARS = 4000


class _Progress:
    """Running totals for heartbeats and the live event stream."""

    def __init__(self) -> None:
        self.lines = 0
        self.tool_calls = 0
        self.last_tool: str | None = None
        self.tokens = 0
        self.cost_usd: float | None = None

    def observe(self, event: AgentEvent) -> None:
        self.lines += 1
        if event.kind == "tool_call" and event.tool is not None:
            self.tool_calls += 1
            self.last_tool = event.tool.name
        if event.tokens is not None:
            self.tokens += event.tokens.total
        if event.cost_usd is not None:
            self.cost_usd = event.cost_usd

    def details(self) -> dict:
        return {
            "lines": self.lines,
            "tool_calls": self.tool_calls,
            "last_tool": self.last_tool,
            "tokens": self.tokens,
            "cost_usd": self.cost_usd,
        }


def classify_outcome(outcome: ProcessOutcome, parsed_error: bool, iteration: int) -> BuildError | None:
    if outcome.canceled:
        return BuildError(
            type=ErrorType.CANCELED,
            message="the agent was stopped by a cancel request",
            phase="build",
            iteration=iteration,
            exit_code=outcome.exit_code,
        )
    if outcome.timed_out:
        return BuildError(
            type=ErrorType.AGENT_TIMEOUT,
            message="the agent exceeded its iteration timeout",
            phase="build",
            iteration=iteration,
            exit_code=outcome.exit_code,
        )
    if outcome.stalled:
        return BuildError(
            type=ErrorType.AGENT_STALLED,
            message="the agent produced no output for its idle timeout",
            phase="build",
            iteration=iteration,
            exit_code=outcome.exit_code,
        )
    if outcome.exit_code not in (0, None) or parsed_error:
        kind = ErrorType.AGENT_TASK_FAILURE if parsed_error and outcome.exit_code == 0 else ErrorType.AGENT_CRASH
        return BuildError(
            type=kind,
            message=f"the agent exited with code {outcome.exit_code}",
            phase="build",
            iteration=iteration,
            exit_code=outcome.exit_code,
        )
    return None


class BuildActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self.deps = deps

    @activity.defn(name="run_agent")
    async def run_agent(self, inp: BuildInput) -> AgentSummary:
        ctx, n, order = inp.ctx, inp.iteration, inp.work_order
        store = self.deps.store
        events = RunEventLog(store, ctx, iteration=n)
        try:
            driver = get_driver(order.agent.driver)
        except UnknownDriverError as exc:
            raise app_error("unknown_driver", str(exc)) from exc

        prompt_ref = store.write_text(ctx, f"prompt-{n}.md", order.task_prompt)
        feedback_file = str(store.path(ctx, inp.feedback_ref)) if inp.feedback_ref else None
        request = AgentRequest(
            work_order=order,
            workspace=inp.workspace.path,
            iteration=n,
            prompt=order.task_prompt,
            prompt_file=str(store.path(ctx, prompt_ref)),
            feedback_file=feedback_file,
            session_id=inp.session_id,
        )
        invocation = driver.build_invocation(request)
        parser = driver.new_parser()
        progress = _Progress()
        stdout_ref, stderr_ref = f"agent-{n}.stdout.log", f"agent-{n}.stderr.log"
        for ref in (stdout_ref, stderr_ref):  # a retried attempt starts its files afresh
            store.path(ctx, ref).unlink(missing_ok=True)

        def on_line(stream: str, line: str) -> None:
            try:
                produced = parser.feed(stream, line)
            except Exception as exc:  # a parser bug must never lose the run; the raw bytes are on disk
                events.emit("parser_error", error=repr(exc))
                return
            for ev in produced:
                progress.observe(ev)
                events.emit(f"agent_{ev.kind}", **ev.model_dump(exclude_none=True, exclude={"kind"}))

        events.emit("phase_started", phase="build", driver=driver.name)
        heartbeat = asyncio.create_task(self._heartbeat(progress))
        outcome: ProcessOutcome | None = None
        options = order.agent.options
        try:
            outcome = await run_streaming(
                invocation.argv,
                cwd=inp.workspace.path,
                env=invocation.env,
                stdout_path=store.path(ctx, stdout_ref),
                stderr_path=store.path(ctx, stderr_ref),
                on_line=on_line,
                timeout_seconds=float(options.get("iteration_timeout_seconds", 0)) or None,
                idle_timeout_seconds=float(options.get("idle_timeout_seconds", 600)) or None,
                grace_seconds=self.deps.settings.agent_grace_seconds,
                stdin_data=invocation.stdin,
            )
        except asyncio.CancelledError:
            self._record(
                ctx,
                n,
                driver.name,
                invocation.argv,
                parser.finish(),
                stdout_ref,
                stderr_ref,
                ProcessOutcome(exit_code=None, duration_ms=0, canceled=True),
            )
            events.emit("phase_completed", phase="build", canceled=True)
            raise
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

        parsed = parser.finish()
        result = self._record(ctx, n, driver.name, invocation.argv, parsed, stdout_ref, stderr_ref, outcome)
        events.emit(
            "phase_completed",
            phase="build",
            success=result.success,
            exit_code=result.exit_code,
            duration_ms=result.duration_ms,
        )
        return AgentSummary(
            success=result.success,
            exit_code=result.exit_code,
            duration_ms=result.duration_ms,
            model=result.model,
            session_id=result.session_id,
            turns=result.turns,
            tokens=result.tokens,
            cost_usd=result.cost_usd,
            tool_calls=len(result.tool_calls),
            result_ref=f"agent-{n}.json",
            stdout_ref=stdout_ref,
            stderr_ref=stderr_ref,
            error=result.error,
        )

    async def _heartbeat(self, progress: _Progress) -> None:
        while True:
            activity.heartbeat(progress.details())
            await asyncio.sleep(self.deps.settings.heartbeat_seconds)

    def _record(
        self, ctx, n, driver_name, argv, parsed, stdout_ref, stderr_ref, outcome: ProcessOutcome
    ) -> AgentResult:
        store = self.deps.store
        stdout = _read_tail(store.path(ctx, stdout_ref))
        stderr = _read_tail(store.path(ctx, stderr_ref))
        error = classify_outcome(outcome, parsed.is_error, n)
        if error is not None:
            error.stdout_tail = tail_text(stdout, 2000)
            error.stderr_tail = tail_text(stderr, 2000)
            error.files = [f"agent-{n}.json", stdout_ref, stderr_ref]
            if parsed.error_message:
                error.message = f"{error.message}: {parsed.error_message}"
        result = AgentResult(
            driver=driver_name,
            iteration=n,
            argv=argv,
            success=error is None,
            exit_code=outcome.exit_code,
            duration_ms=outcome.duration_ms,
            session_id=parsed.session_id,
            model=parsed.model,
            turns=parsed.turns,
            tokens=parsed.tokens,
            cost_usd=parsed.cost_usd,
            tool_calls=parsed.tool_calls,
            final_message=parsed.final_message,
            stdout_ref=stdout_ref,
            stderr_ref=stderr_ref,
            stdout_bytes=outcome.stdout_bytes,
            stderr_bytes=outcome.stderr_bytes,
            stdout_excerpt=tail_text(stdout, EXCERPT_CHARS),
            stderr_excerpt=tail_text(stderr, EXCERPT_CHARS),
            unparsed_lines=parsed.unparsed_lines,
            timed_out=outcome.timed_out,
            stalled=outcome.stalled,
            canceled=outcome.canceled,
            survivors=outcome.survivors,
            error=error,
        )
        store.persist_json(ctx, f"agent-{n}.json", result)
        return result


def _read_tail(path: Path, limit: int = 64 * 1024) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read()
    except FileNotFoundError:
        return b""
