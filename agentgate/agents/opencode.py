"""The `opencode` driver: OpenCode's headless `opencode run --format json`.

Command line: `opencode run --format json [--model provider/model] [--agent name]
[--session <id>] <prompt>`; from iteration 2 on `--session` continues the session the
first iteration started. OpenCode reads `AGENTS.md` itself; the gates and the previous
feedback go into the prompt. The prompt is one argv entry, except when it is too long for
one (then stdin, which OpenCode appends to the message when stdin is not a terminal).

The stream (`run.ts`: `{type, timestamp, sessionID, part}` per line): `step_start`;
`text` (a finished text part); `tool_use` with `part.tool`, `part.callID` and
`part.state` (`status` completed|error, `input`, `output` or `error`, `time.start/end` in
ms); `step_finish` with `part.cost` (USD) and `part.tokens` (input, output, reasoning,
cache.read, cache.write); `reasoning` (with --thinking); and `error` with `error.name` /
`error.data.message` (e.g. ProviderAuthError, APIError with data.statusCode). OpenCode
does not name the model in this stream, so the model is the one the work order asked for.
"""

from __future__ import annotations

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

ARGV_PROMPT_BYTES = 100_000


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


class OpenCodeJsonParser:
    """Reads `opencode run --format json`; never raises on a line it does not know."""

    def __init__(self, model: str | None = None) -> None:
        self.run = ParsedRun(model=model)
        self._steps = 0
        self._cost_reported = False

    def feed(self, stream: str, line: str) -> list[AgentEvent]:
        data, passthrough = decode_json_line(self.run, stream, line)
        if data is None:
            return passthrough
        self.run.session_id = data.get("sessionID") or self.run.session_id
        kind = data.get("type")
        part = data.get("part") if isinstance(data.get("part"), dict) else {}
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
        self.run.unparsed_lines += 1
        return []

    def _tool(self, part: dict) -> list[AgentEvent]:
        state = part.get("state") if isinstance(part.get("state"), dict) else {}
        status = state.get("status")
        timing = state.get("time") if isinstance(state.get("time"), dict) else {}
        start, end = timing.get("start"), timing.get("end")
        call = ToolCall(
            id=part.get("callID") or part.get("id"),
            name=str(part.get("tool", "?")),
            input=state.get("input"),
            output=str(state.get("output")) if status == "completed" else state.get("error"),
            is_error=status == "error",
            duration_ms=int(end - start) if isinstance(start, int | float) and isinstance(end, int | float) else None,
        )
        self.run.tool_calls.append(call)
        return [AgentEvent(kind="tool_call", tool=call), AgentEvent(kind="tool_result", tool=call)]

    def _step_finish(self, part: dict) -> list[AgentEvent]:
        self._steps += 1
        raw = part.get("tokens") if isinstance(part.get("tokens"), dict) else {}
        cache = raw.get("cache") if isinstance(raw.get("cache"), dict) else {}
        usage = TokenUsage(
            input=_int(raw.get("input")),
            output=_int(raw.get("output")) + _int(raw.get("reasoning")),  # reasoning is billed as output
            cache_creation=_int(cache.get("write")),
            cache_read=_int(cache.get("read")),
        )
        self.run.tokens = self.run.tokens + usage
        if isinstance(part.get("cost"), int | float):
            self._cost_reported = self._cost_reported or part["cost"] > 0
            self.run.cost_usd = round((self.run.cost_usd or 0.0) + float(part["cost"]), 6)
        return [AgentEvent(kind="usage", tokens=usage, cost_usd=self.run.cost_usd, turns=self._steps)]

    def _error(self, error: Any) -> list[AgentEvent]:
        self.run.is_error = True
        if isinstance(error, dict):
            self.run.error_kind = str(error.get("name") or "") or None
            data = error.get("data") if isinstance(error.get("data"), dict) else {}
            self.run.error_message = str(data.get("message") or error.get("message") or error.get("name"))
            if isinstance(data.get("statusCode"), int):
                self.run.api_error_status = data["statusCode"]
        else:
            self.run.error_message = str(error)
        return [AgentEvent(kind="message", text=f"error: {self.run.error_message}")]

    def finish(self) -> ParsedRun:
        run = self.run
        run.turns = self._steps or None
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
        if agent.model:
            argv += ["--model", agent.model]
        if options.get("agent"):
            argv += ["--agent", str(options["agent"])]
        if request.session_id and request.iteration > 1 and options.get("resume", True):
            argv += ["--session", request.session_id]
        prompt = iteration_prompt(request) + "\n\n" + compose_context(request, include_instructions=False)
        if len(prompt.encode()) > ARGV_PROMPT_BYTES:  # one argv entry may not exceed 128 KiB on Linux
            return AgentInvocation(argv=argv, env=base_environment(request), stdin=prompt.encode())
        argv += ["--", prompt]
        return AgentInvocation(argv=argv, env=base_environment(request))

    def new_parser(self) -> OpenCodeJsonParser:
        return OpenCodeJsonParser(model=self._model)
