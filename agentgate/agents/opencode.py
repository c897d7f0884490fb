"""The `opencode` driver: OpenCode's headless `opencode run --format json`.

Command line: `opencode run --format json --print-logs --log-level ERROR [--model provider/model]
[--agent name] [--variant v] [--auto] [--session <id>]` with the prompt on stdin; from
iteration 2 on `--session` continues the session the first iteration started. OpenCode
reads `AGENTS.md` itself; the gates and the previous feedback go into the prompt. Stdin,
not an argv entry: `run` wraps every message word that contains a space in double quotes
(escaping the quotes inside), so a prompt passed as one argument reaches the model quoted,
and one argument may not exceed 128 KiB; piped stdin is taken as it is. Options: `agent`,
`variant`, `auto_approve` (`--auto`: approve permission requests that `run` would
otherwise reject), `print_logs` (default on).

The stream (`packages/opencode/src/cli/cmd/run.ts`: one `{type, timestamp, sessionID, …}`
object per line; part shapes in `session/message-v2.ts`; checked against opencode-ai
1.18.33 run against a local Anthropic-format API):
- `step_start` — `part` is a StepStartPart (`snapshot`);
- `text` — a finished TextPart (`part.text`, `part.time.start/end`);
- `reasoning` — a finished ReasoningPart (only with `--thinking`);
- `tool_use` — a ToolPart once it is `completed` or `error`: `part.tool`, `part.callID`,
  `part.state` with `status`, `input`, `output` or `error`, `metadata` (bash: `exit`) and
  `time.start/end` in epoch ms;
- `step_finish` — `part.reason` (tool-calls | stop | …), `part.cost` in USD and `part.tokens`
  (`total`, `input` without cache, `output`, `reasoning`, `cache.read`, `cache.write`);
- `error` — `error.name` (`APIError` with `data.statusCode` / `data.isRetryable`,
  `ProviderAuthError`, `UnknownError` with `data.ref`, …) and `error.data.message`;
- `done` (newer releases) — `reason` and the permissions `run` `rejected`.

The exit code is 1 after an `error` event. OpenCode does not name the model in the stream,
so the model is the one the work order asked for. `UnknownError` only says "Check server
logs"; with `--print-logs --log-level ERROR` the log line that carries the same `ref` is on
stderr (`… message=failed ref=err_… error="ProviderModelNotFoundError: …"`), and the
parser puts that cause into the error. Usage errors (`Session not found`, `You must provide
a message`) are `Error: …` lines on stderr; an unknown option or a bad choice only prints
the usage there.
"""

from __future__ import annotations

import re
from typing import Any

from agentgate.agents.base import (
    AgentEvent,
    AgentInvocation,
    AgentRequest,
    ParsedRun,
    ToolCall,
    base_environment,
    decode_json_line,
)
from agentgate.agents.context import compose_context, iteration_prompt
from agentgate.agents.pricing import estimate_cost
from agentgate.models import TokenUsage

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LOG_ERROR = re.compile(r'\bref=(err_\w+)\b.*?\berror="((?:[^"\\]|\\.)*)"')
MODEL_HINT = (
    " (OpenCode lists a provider's models only when that provider's credentials are set: pass the key, "
    "e.g. ANTHROPIC_API_KEY, with agent.options.env_passthrough)"
)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


class OpenCodeJsonParser:
    """Reads `opencode run --format json` (stdout) and its error log lines (stderr); never raises."""

    def __init__(self, model: str | None = None) -> None:
        self.run = ParsedRun(model=model)
        self._steps = 0
        self._cost_reported = False
        self._first_ts: int | None = None
        self._error_ref: str | None = None
        self._logged_errors: dict[str, str] = {}
        self._cli_error: str | None = None

    def feed(self, stream: str, line: str) -> list[AgentEvent]:
        if stream == "stderr":
            self._stderr(line)
        data, passthrough = decode_json_line(self.run, stream, line)
        if data is None:
            return passthrough
        self.run.session_id = data.get("sessionID") or self.run.session_id
        if isinstance(data.get("timestamp"), int) and self._first_ts is None:
            self._first_ts = data["timestamp"]
        kind = data.get("type")
        part = _dict(data.get("part"))
        if kind == "step_start":
            return []
        if kind == "text":
            text = str(part.get("text", ""))
            if text.strip():
                self.run.final_message = text
            return [AgentEvent(kind="message", text=text)]
        if kind == "reasoning":
            return [AgentEvent(kind="message", text=str(part.get("text", "")))]
        if kind == "tool_use":
            return self._tool(part)
        if kind == "step_finish":
            return self._step_finish(part)
        if kind == "error":
            return self._error(data.get("error"))
        if kind == "done":
            rejected = data.get("rejected") or []
            if rejected:
                return [AgentEvent(kind="message", text=f"permissions rejected: {', '.join(map(str, rejected))}")]
            return []
        self.run.unparsed_lines += 1
        return []

    def _stderr(self, line: str) -> None:
        clean = ANSI.sub("", line).strip()
        if m := LOG_ERROR.search(clean):
            self._logged_errors[m.group(1)] = m.group(2).replace('\\"', '"').split("\\n")[0]
        elif clean.startswith("Error:"):
            self._cli_error = clean[len("Error:") :].strip() or self._cli_error
        elif clean.startswith("opencode run [message..]") and self._cli_error is None:
            # yargs rejects an unknown option or a bad choice by printing the usage, with no message.
            self._cli_error = "unrecognized argument: opencode printed its usage instead of running (see stderr)"

    def _tool(self, part: dict) -> list[AgentEvent]:
        state = _dict(part.get("state"))
        status = state.get("status")
        timing = _dict(state.get("time"))
        start, end = timing.get("start"), timing.get("end")
        exit_code = _dict(state.get("metadata")).get("exit")
        failed = status == "error" or (isinstance(exit_code, int) and exit_code != 0)
        call = ToolCall(
            id=part.get("callID") or part.get("id"),
            name=str(part.get("tool", "?")),
            input=state.get("input"),
            output=str(state["output"]) if status == "completed" and "output" in state else state.get("error"),
            is_error=failed,
            started_at_ms=max(0, int(start - self._first_ts)) if isinstance(start, int) and self._first_ts else None,
            duration_ms=int(end - start) if isinstance(start, int | float) and isinstance(end, int | float) else None,
        )
        self.run.tool_calls.append(call)
        return [AgentEvent(kind="tool_call", tool=call), AgentEvent(kind="tool_result", tool=call)]

    def _step_finish(self, part: dict) -> list[AgentEvent]:
        self._steps += 1
        raw = _dict(part.get("tokens"))
        cache = _dict(raw.get("cache"))
        usage = TokenUsage(
            input=_int(raw.get("input")),
            output=_int(raw.get("output")) + _int(raw.get("reasoning")),  # reasoning is billed as output
            cache_creation=_int(cache.get("write")),
            cache_read=_int(cache.get("read")),
        )
        self.run.tokens = self.run.tokens + usage
        if isinstance(part.get("cost"), int | float):
            self._cost_reported = self._cost_reported or part["cost"] > 0
            self.run.cost_usd = round((self.run.cost_usd or 0.0) + float(part["cost"]), 10)
        return [AgentEvent(kind="usage", tokens=usage, cost_usd=self.run.cost_usd, turns=self._steps)]

    def _error(self, error: Any) -> list[AgentEvent]:
        self.run.is_error = True
        if isinstance(error, dict):
            self.run.error_kind = str(error.get("name") or "") or None
            data = _dict(error.get("data"))
            self.run.error_message = str(data.get("message") or error.get("message") or error.get("name"))
            if isinstance(data.get("statusCode"), int):
                self.run.api_error_status = data["statusCode"]
            self._error_ref = data.get("ref") if isinstance(data.get("ref"), str) else None
        else:
            self.run.error_message = str(error)
        return [AgentEvent(kind="message", text=f"error: {self.run.error_message}")]

    def stop_reason(self) -> str | None:
        return None  # `opencode run` ends by itself after an error event

    def finish(self) -> ParsedRun:
        run = self.run
        run.turns = self._steps or None
        cause = self._logged_errors.get(self._error_ref or "")
        if cause:  # "Unexpected server error. Check server logs" → the logged cause
            name = cause.split(":", 1)[0]
            if re.fullmatch(r"\w+Error", name):
                run.error_kind = name
            run.error_message = f"{cause}{MODEL_HINT if name == 'ProviderModelNotFoundError' else ''}"
        if run.error_message is None and self._cli_error:
            run.error_message = self._cli_error
        if not self._cost_reported:  # providers without pricing in OpenCode report 0
            run.cost_usd = estimate_cost(run.model, run.tokens) if run.tokens.total else run.cost_usd
        return run


class OpenCodeDriver:
    name = "opencode"

    def __init__(self) -> None:
        self._model: str | None = None

    def build_invocation(self, request: AgentRequest) -> AgentInvocation:
        agent = request.work_order.agent
        options = agent.options
        self._model = agent.model
        argv = [str(options.get("binary") or "opencode"), "run", "--format", "json"]
        if options.get("print_logs", True):
            argv += ["--print-logs", "--log-level", "ERROR"]
        if agent.model:
            if "/" not in agent.model:
                raise ValueError(f"opencode: agent.model must be provider/model (anthropic/…), not {agent.model!r}")
            argv += ["--model", agent.model]
        if options.get("agent"):
            argv += ["--agent", str(options["agent"])]
        if options.get("variant"):
            argv += ["--variant", str(options["variant"])]
        if options.get("auto_approve"):
            argv += ["--auto"]
        if request.session_id and request.iteration > 1 and options.get("resume", True):
            argv += ["--session", request.session_id]
        prompt = iteration_prompt(request) + "\n\n" + compose_context(request, include_instructions=False)
        return AgentInvocation(argv=argv, env=base_environment(request), stdin=prompt.encode())

    def new_parser(self) -> OpenCodeJsonParser:
        return OpenCodeJsonParser(model=self._model)
