"""The build phase: run the agent CLI in the workspace, record everything, stop it for real.

The activity heartbeats with progress while the agent runs; Temporal delivers
cancellation through that heartbeat, and `run_streaming` then stops the whole process
tree before this activity returns (the workflow waits for that: WAIT_CANCELLATION_COMPLETED).

After the run, the failure (if any) is classified by the table in `agentgate.agents.classify`:
transient failures the CLI reports (rate limit, overload, server errors, dropped
connections) are raised as retryable ApplicationErrors, so the activity's retry policy backs
off and runs the iteration again; every other failure is returned as the summary's
`BuildError` (authentication, bad arguments, max turns, crash, timeout, stall, cancel) with
the CLI's own message, and `agent-<N>.json` records it all either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from pathlib import Path

from temporalio import activity

from activities.deps import ActivityDeps
from activities.errors import app_error
from agentgate.agents import UnknownDriverError, get_driver
from agentgate.agents.base import AgentEvent, AgentRequest, AgentResult, ParsedRun
from agentgate.agents.classify import Classification, classify
from agentgate.artifacts import tail_text
from agentgate.events import RunEventLog
from agentgate.models import AgentSummary, BuildError, BuildInput, ErrorType, TokenUsage
from agentgate.observability.tracing import record_agent_run, traced_phase
from agentgate.process import ProcessOutcome, run_streaming

EXCERPT_CHARS = 4000


class _Progress:
    """Running totals for heartbeats and the live event stream: what a stuck or costly run looks like from outside."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.lines = 0
        self.turns: int | None = None
        self.tool_calls = 0
        self.last_tool: str | None = None
        self.tokens = TokenUsage()
        self.cost_usd: float | None = None

    def observe(self, event: AgentEvent) -> None:
        self.lines += 1
        if event.kind == "tool_call" and event.tool is not None:
            self.tool_calls += 1
            self.last_tool = event.tool.name
        if event.tokens is not None:
            self.tokens = self.tokens + event.tokens
        if event.cost_usd is not None:
            self.cost_usd = event.cost_usd
        if event.turns is not None:
            self.turns = event.turns

    def details(self) -> dict:
        return {
            "elapsed_s": round(time.monotonic() - self.started, 1),
            "lines": self.lines,
            "turns": self.turns,
            "tool_calls": self.tool_calls,
            "last_tool": self.last_tool,
            "tokens": self.tokens.total,
            "tokens_by_kind": self.tokens.model_dump(),
            "cost_usd": self.cost_usd,
        }


def classify_outcome(
    outcome: ProcessOutcome, parsed: ParsedRun, iteration: int, stderr: str = ""
) -> tuple[BuildError | None, Classification | None]:
    """The iteration's error, if any, and the table row that explains it (None for our own limits)."""

    def err(kind: ErrorType, message: str) -> BuildError:
        return BuildError(type=kind, message=message, phase="build", iteration=iteration, exit_code=outcome.exit_code)

    if outcome.canceled:
        return err(ErrorType.CANCELED, "the agent was stopped by a cancel request"), None
    if outcome.timed_out:
        return err(ErrorType.AGENT_TIMEOUT, "the agent exceeded its iteration timeout"), None
    if outcome.stalled:
        return err(ErrorType.AGENT_STALLED, "the agent produced no output for its idle timeout"), None
    if outcome.exit_code in (0, None) and not parsed.is_error:
        return None, None
    found = classify(
        kind=parsed.error_kind,
        status=parsed.api_error_status,
        message=parsed.error_message,
        stderr=stderr,
        exit_code=outcome.exit_code,
    )
    cli_message = parsed.error_message or _last_line(stderr)
    if found is not None:
        message = f"{found.reason.replace('_', ' ')}: {cli_message}" if cli_message else found.reason
        return err(found.error_type, message), found
    kind = ErrorType.AGENT_TASK_FAILURE if parsed.is_error and outcome.exit_code == 0 else ErrorType.AGENT_CRASH
    message = f"the agent exited with code {outcome.exit_code}"
    return err(kind, f"{message}: {cli_message}" if cli_message else message), None


def _last_line(text: str) -> str | None:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:500] if lines else None


async def _announce_start(ctx, iteration: int) -> None:
    """Tell the workflow it holds an agent slot now ("queued" becomes "running"). Best effort:
    a lost signal only delays the status change until the build returns."""
    try:
        handle = activity.client().get_workflow_handle(ctx.work_order_id, run_id=ctx.run_id)
        await handle.signal("agent_started", iteration)
    except Exception as exc:  # noqa: BLE001 - the build must not fail for a status signal
        activity.logger.warning("could not signal agent_started: %s", exc)


class BuildActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self.deps = deps

    @activity.defn(name="run_agent")
    @traced_phase("build")
    async def run_agent(self, inp: BuildInput) -> AgentSummary:
        ctx, n = inp.ctx, inp.iteration
        order = await self.deps.load_work_order(ctx, inp.work_order)
        store = self.deps.store
        events = RunEventLog(store, ctx, iteration=n)
        await _announce_start(ctx, n)
        try:
            driver = get_driver(order.agent.driver)
        except UnknownDriverError as exc:
            raise app_error("unknown_driver", str(exc)) from exc

        prompt_file, feedback_file = self._read_back_files(ctx, n, order.task_prompt, inp, events)
        request = AgentRequest(
            work_order=order,
            workspace=inp.workspace.path,
            iteration=n,
            prompt=order.task_prompt,
            prompt_file=prompt_file,
            feedback_file=feedback_file,
            session_id=inp.session_id,
        )
        try:
            invocation = driver.build_invocation(request)
        except (ValueError, TypeError) as exc:
            raise app_error("invalid_input", f"agent {driver.name}: {exc}") from exc
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

        wrapped = self._sandbox(ctx, order, driver.name, inp.workspace.path, invocation)
        run_argv, run_env = (wrapped.argv, wrapped.env) if wrapped else (invocation.argv, invocation.env)
        events.emit("phase_started", phase="build", driver=driver.name,
                    sandbox=wrapped.description if wrapped else "none")  # fmt: skip
        heartbeat = asyncio.create_task(self._heartbeat(progress))
        outcome = ProcessOutcome(exit_code=None, duration_ms=0)
        options = order.agent.options
        try:
            await run_streaming(
                run_argv,
                cwd=inp.workspace.path,
                env=run_env,
                stdout_path=store.path(ctx, stdout_ref),
                stderr_path=store.path(ctx, stderr_ref),
                on_line=on_line,
                timeout_seconds=float(options.get("iteration_timeout_seconds", 0)) or None,
                idle_timeout_seconds=float(options.get("idle_timeout_seconds", 600)) or None,
                grace_seconds=float(options.get("grace_seconds", self.deps.settings.agent_grace_seconds)),
                stdin_data=invocation.stdin,
                outcome=outcome,
                should_stop=getattr(parser, "stop_reason", None),  # e.g. codex waiting for a network forever
            )
        except asyncio.CancelledError:
            outcome.canceled = True
            self._record(ctx, n, driver.name, invocation.argv, parser.finish(), stdout_ref, stderr_ref, outcome)
            events.emit("phase_completed", phase="build", canceled=True, survivors=outcome.survivors)
            raise
        except OSError as exc:  # the CLI is missing or not executable: nothing ran, nothing to retry
            try:
                store.write_text(ctx, stderr_ref, f"{invocation.argv[0]}: {exc}\n")
            except OSError as write_exc:  # a full store: counted; the exit code below says what happened
                store.record_failure(stderr_ref, write_exc, ctx)
            outcome.exit_code = 127 if isinstance(exc, FileNotFoundError) else 126
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            sandbox_record, evidence = self._close_sandbox(wrapped)

        parsed = parser.finish()
        result, found = self._record(ctx, n, driver.name, invocation.argv, parsed, stdout_ref, stderr_ref, outcome)
        if wrapped is not None:
            result = self._apply_sandbox(ctx, n, wrapped.policy, result, sandbox_record, evidence)
        # What goes on to Temporal's history (messages, final text) is redacted like the files are.
        result = AgentResult.model_validate(store.redact_obj(ctx, result.model_dump(mode="json")))
        record_agent_run(driver.name, result)
        events.emit(
            "phase_completed",
            phase="build",
            success=result.success,
            exit_code=result.exit_code,
            duration_ms=result.duration_ms,
            error_type=result.error.type.value if result.error else None,
            retryable=bool(found and found.retryable),
            model=result.model,
            tokens=result.tokens.model_dump(),
            cost_usd=result.cost_usd,
            turns=result.turns,
        )
        if found is not None and found.retryable and result.error is not None:
            # Temporal's retry policy (AGENT_RETRY) backs off and runs this iteration again.
            raise app_error(
                result.error.type,
                result.error.message,
                retryable=True,
                reason=found.reason,
                result_ref=f"agent-{n}.json",
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
            final_message=(result.final_message or "")[-4000:] or None,
            sandbox_provider=result.sandbox.get("provider"),
            sandbox_network=result.sandbox.get("network"),
        )

    def _sandbox(self, ctx, order, driver_name: str, workspace: str, invocation):
        """Wrap the agent command in its sandbox: the work order's policy, else the worker's default
        (sandboxed and offline, see agentgate/sandbox/agent_phase.py), with a private HOME for the CLI."""
        from agentgate.sandbox.agent_phase import wrap_agent
        from agentgate.sandbox.base import SandboxUnavailable
        from agentgate.sandbox.policy import SandboxConfigError
        from agentgate.sandbox.session import session_home_path

        settings = self.deps.settings
        try:
            return wrap_agent(invocation.argv, driver=driver_name, workspace=workspace, env=invocation.env,
                              order_policy=order.sandbox, run_dir=self.deps.store.run_dir(ctx),
                              session_home=session_home_path(settings.workspaces_dir, ctx.work_order_id, ctx.run_id),
                              default_provider=settings.sandbox_default_provider,
                              options=order.agent.options, hide=settings.service_state_dirs)  # fmt: skip
        except (SandboxUnavailable, SandboxConfigError) as exc:
            raise app_error("invalid_input", f"sandbox: {exc}") from exc

    @staticmethod
    def _close_sandbox(wrapped) -> tuple[dict, dict]:
        if wrapped is None:
            return {}, {}
        try:
            return wrapped.record(), wrapped.evidence()
        finally:
            wrapped.cleanup()

    def _apply_sandbox(self, ctx, n, policy, result: AgentResult, record: dict, evidence: dict) -> AgentResult:
        """Record the sandbox in agent-N.json and classify a breached resource limit."""
        from agentgate.sandbox.limits import classify_exit

        result.sandbox = record
        reason = classify_exit(result.exit_code, None, result.stderr_excerpt, policy, evidence)
        if reason and not result.success:
            result.error = BuildError(type=ErrorType.RESOURCE_EXCEEDED, message=f"resource_exceeded: {reason}",
                                      phase="build", iteration=n, exit_code=result.exit_code,
                                      stderr_tail=result.stderr_excerpt[-2000:],
                                      files=[f"agent-{n}.json", result.stdout_ref, result.stderr_ref])  # fmt: skip
        self.deps.store.persist_json(ctx, f"agent-{n}.json", result)
        return result

    def _read_back_files(self, ctx, n: int, prompt: str, inp: BuildInput, events) -> tuple[str, str | None]:
        """The prompt file and the last feedback file the agent reads, wherever the store could keep them.

        A full artifact store is counted and the files live in a spill folder instead
        (`ArtifactStore.keep_text`); the agent gets a copy in its workspace's `.git/agentgate/`, which
        every sandbox shows it (the run folder is mounted, a spill folder is not) and no snapshot
        commits. Feedback that is nowhere (its phase ran on a host whose spill this one cannot see)
        leaves the agent without it, announced; a prompt no place can take is a retryable error.
        """
        store, feedback_ref = self.deps.store, inp.feedback_ref
        prompt_path = store.keep_text(ctx, f"prompt-{n}.md", prompt)
        if prompt_path is None:
            raise app_error(ErrorType.SYSTEM_ERROR, f"prompt-{n}.md could not be written to the artifact store "
                            "or any spill folder (disk full?)", retryable=True)  # fmt: skip
        feedback_path = store.locate(ctx, feedback_ref) if feedback_ref else None
        if feedback_ref and feedback_path is None:
            where = f"the artifact store or a spill folder on host {self.deps.settings.host_id}"
            events.emit("feedback_unavailable", message=f"{feedback_ref} is not in {where}: the agent runs without it")
        prompt_path = _visible_to_agent(store.run_dir(ctx), prompt_path, inp.workspace.path)
        if feedback_path is not None:
            feedback_path = _visible_to_agent(store.run_dir(ctx), feedback_path, inp.workspace.path)
        return str(prompt_path), str(feedback_path) if feedback_path else None

    async def _heartbeat(self, progress: _Progress) -> None:
        while True:
            activity.heartbeat(progress.details())
            await asyncio.sleep(self.deps.settings.heartbeat_seconds)

    def _record(
        self, ctx, n, driver_name, argv, parsed, stdout_ref, stderr_ref, outcome: ProcessOutcome
    ) -> tuple[AgentResult, Classification | None]:
        store = self.deps.store
        stdout = _read_tail(store.path(ctx, stdout_ref))
        stderr = _read_tail(store.path(ctx, stderr_ref))
        error, found = classify_outcome(outcome, parsed, n, tail_text(stderr, 8000))
        if error is not None:
            error.stdout_tail = tail_text(stdout, 2000)
            error.stderr_tail = tail_text(stderr, 2000)
            error.files = [f"agent-{n}.json", stdout_ref, stderr_ref]
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
            stop_reason=outcome.stopped,
            survivors=outcome.survivors,
            error=error,
        )
        store.persist_json(ctx, f"agent-{n}.json", result)
        return result, found


def _visible_to_agent(run_dir: Path, path: Path, workspace: str) -> Path:
    """`path` when it is in the run folder; a spilled file is copied to `<workspace>/.git/agentgate/`."""
    git_dir = Path(workspace) / ".git"
    if path.parent == run_dir or not git_dir.is_dir():
        return path
    dest = git_dir / "agentgate" / path.name
    try:
        dest.parent.mkdir(exist_ok=True)
        shutil.copyfile(path, dest)
    except OSError as exc:
        activity.logger.warning("cannot copy %s into the workspace's git folder: %s", path, exc)
        return path
    return dest


def _read_tail(path: Path, limit: int = 64 * 1024) -> bytes:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - limit))
            return fh.read()
    except FileNotFoundError:
        return b""
