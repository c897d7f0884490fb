"""The `claude-code` driver: Claude Code in print mode with its stream-json transcript.

Command line: `claude -p --output-format stream-json --verbose` plus, from the work order,
`--model`, `--max-turns` (`options.max_turns`), `--permission-mode` (`options.permission_mode`,
default `acceptEdits`), `--allowedTools` / `--disallowedTools` (`options.allowed_tools`,
`options.disallowed_tools`), `--append-system-prompt` (repository AGENTS.md/CLAUDE.md, the
gates, the previous feedback) and `--resume <session_id>` from iteration 2 on, so the agent
keeps its own memory of what it already tried. The prompt goes in on stdin: a 200 kB task
would not fit in one argv entry.

Authentication (`options.auth`): `api_key` — `ANTHROPIC_API_KEY` reaches the CLI only when
the work order names it in `options.env_passthrough`; `subscription` — the credentials in
`$HOME/.claude` are used and every API-key variable is removed from the child's
environment, because the CLI prefers a key over the subscription when both are present;
`auto` (default) — whatever the environment holds.

The stream (one JSON object per line): `system/init` (session id, model, tools);
`assistant` lines, one per content block, repeating the API message's `id` and `usage`;
`user` lines carrying `tool_result` blocks; `system/api_retry` while the CLI retries; and a
final `result` line (subtype, is_error, num_turns, duration_ms, total_cost_usd, result,
session_id, usage, api_error_status). Authentication and API failures arrive as an
assistant line with a top-level `error` field and an `is_error` result.
"""

from __future__ import annotations

import json
import time
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

API_KEY_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
DEFAULT_PERMISSION_MODE = "acceptEdits"
SYSTEM_PROMPT_CHARS = 100_000


def _tool_list(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [t for t in value.split(",") if t.strip()]
    return [str(t) for t in value]


def _usage(raw: Any) -> TokenUsage:
    if not isinstance(raw, dict):
        return TokenUsage()

    def num(key: str) -> int:
        value = raw.get(key)
        return int(value) if isinstance(value, int | float) else 0

    return TokenUsage(
        input=num("input_tokens"),
        output=num("output_tokens"),
        cache_creation=num("cache_creation_input_tokens"),
        cache_read=num("cache_read_input_tokens"),
    )


def _content_text(content: Any) -> str | None:
    """A tool_result's content is a string or a list of blocks; keep the text of either."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text":
                texts.append(str(block.get("text", "")))
            elif isinstance(block, dict):
                texts.append(f"[{block.get('type', 'block')}]")
            else:
                texts.append(str(block))
        return "\n".join(texts)
    return json.dumps(content)


class ClaudeStreamParser:
    """Reads `--output-format stream-json --verbose`; never raises on a line it does not know."""

    def __init__(self, model: str | None = None) -> None:
        self.run = ParsedRun(model=model)
        self._usage_by_message: dict[str, TokenUsage] = {}
        self._tools: dict[str, ToolCall] = {}
        self._started = time.monotonic()
        self._result_seen = False
        self._assistant_messages = 0

    def _now_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000)

    def feed(self, stream: str, line: str) -> list[AgentEvent]:
        data, passthrough = decode_json_line(self.run, stream, line)
        if data is None:
            return passthrough
        kind = data.get("type")
        if kind == "system":
            return self._system(data)
        if kind == "assistant":
            return self._assistant(data)
        if kind == "user":
            return self._user(data)
        if kind == "result":
            return self._result(data)
        if kind in ("stream_event", "rate_limit_event"):
            return []
        self.run.unparsed_lines += 1
        return []

    def _system(self, data: dict) -> list[AgentEvent]:
        self.run.session_id = data.get("session_id") or self.run.session_id
        if data.get("subtype") == "init":
            self.run.model = data.get("model") or self.run.model
        elif data.get("subtype") == "api_retry":
            status = data.get("error_status")
            return [AgentEvent(kind="message", text=f"API retry {data.get('attempt')}: {data.get('error')} ({status})")]
        return []

    def _assistant(self, data: dict) -> list[AgentEvent]:
        message = data.get("message")
        if not isinstance(message, dict):
            self.run.unparsed_lines += 1
            return []
        self.run.session_id = data.get("session_id") or self.run.session_id
        model = message.get("model")
        if model and model != "<synthetic>":
            self.run.model = model
        events: list[AgentEvent] = []
        error = data.get("error")
        message_id = str(message.get("id") or f"anon-{self._assistant_messages}")
        if message_id not in self._usage_by_message:
            self._assistant_messages += 1
        usage = _usage(message.get("usage"))
        previous = self._usage_by_message.get(message_id, TokenUsage())
        if usage != previous:  # every block of one API message repeats its usage; count it once
            self._usage_by_message[message_id] = usage
            delta = TokenUsage(
                input=max(0, usage.input - previous.input),
                output=max(0, usage.output - previous.output),
                cache_creation=max(0, usage.cache_creation - previous.cache_creation),
                cache_read=max(0, usage.cache_read - previous.cache_read),
            )
            events.append(AgentEvent(kind="usage", tokens=delta, turns=self._assistant_messages))
        for block in message.get("content") or []:
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "text":
                text = str(block.get("text", ""))
                if error:
                    self.run.is_error = True
                    self.run.error_kind = str(error)
                    self.run.error_message = text
                elif text.strip():
                    self.run.final_message = text
                events.append(AgentEvent(kind="message", text=text))
            elif btype in ("tool_use", "server_tool_use"):
                call = ToolCall(
                    id=block.get("id"),
                    name=str(block.get("name", "?")),
                    input=block.get("input"),
                    started_at_ms=self._now_ms(),
                )
                self.run.tool_calls.append(call)
                if call.id:
                    self._tools[call.id] = call
                events.append(AgentEvent(kind="tool_call", tool=call))
            elif btype == "thinking":
                events.append(AgentEvent(kind="message", text=str(block.get("thinking", ""))))
        return events

    def _user(self, data: dict) -> list[AgentEvent]:
        message = data.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        events: list[AgentEvent] = []
        if not isinstance(content, list):
            return events
        for block in content:
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            call = self._tools.get(str(block.get("tool_use_id")))
            if call is None:
                call = ToolCall(id=block.get("tool_use_id"), name="?")
                self.run.tool_calls.append(call)
            call.output = _content_text(block.get("content"))
            call.is_error = bool(block.get("is_error"))
            if call.started_at_ms is not None:
                call.duration_ms = max(0, self._now_ms() - call.started_at_ms)
            events.append(AgentEvent(kind="tool_result", tool=call))
        return events

    def _result(self, data: dict) -> list[AgentEvent]:
        self._result_seen = True
        run = self.run
        run.session_id = data.get("session_id") or run.session_id
        if isinstance(data.get("num_turns"), int):
            run.turns = data["num_turns"]
        if isinstance(data.get("total_cost_usd"), int | float):
            run.cost_usd = float(data["total_cost_usd"])
        total = _usage(data.get("usage"))
        if total.total:
            run.tokens = total
        subtype = str(data.get("subtype") or "")
        text = data.get("result")
        if isinstance(data.get("api_error_status"), int):
            run.api_error_status = data["api_error_status"]
        if data.get("is_error") or subtype.startswith("error"):
            run.is_error = True
            if subtype.startswith("error"):
                run.error_kind = subtype
            errors = data.get("errors")
            detail = text if isinstance(text, str) and text else None
            if detail is None and isinstance(errors, list) and errors:
                detail = "; ".join(str(e) for e in errors)
            if detail is None and subtype == "error_max_turns":
                detail = f"reached the maximum number of turns ({data.get('num_turns')})"
            run.error_message = detail or run.error_message or subtype or "the agent reported an error"
        elif isinstance(text, str) and text:
            run.final_message = text
        return [AgentEvent(kind="usage", tokens=TokenUsage(), cost_usd=run.cost_usd, turns=run.turns)]

    def stop_reason(self) -> str | None:
        return None  # the CLI's own retries are bounded (CLAUDE_CODE_MAX_RETRIES)

    def finish(self) -> ParsedRun:
        run = self.run
        if not run.tokens.total:
            summed = TokenUsage()
            for usage in self._usage_by_message.values():
                summed = summed + usage
            run.tokens = summed
        if run.turns is None and self._assistant_messages:
            run.turns = self._assistant_messages
        if run.cost_usd is None:
            run.cost_usd = estimate_cost(run.model, run.tokens)
        if not self._result_seen and not run.is_error and run.final_message is None:
            run.error_message = "the stream ended without a result line"
        return run


class ClaudeCodeDriver:
    name = "claude-code"

    def __init__(self) -> None:
        self._model: str | None = None

    def build_invocation(self, request: AgentRequest) -> AgentInvocation:
        agent = request.work_order.agent
        options = agent.options
        self._model = agent.model
        argv = [str(options.get("binary") or "claude"), "-p", "--output-format", "stream-json", "--verbose"]
        if agent.model:
            argv += ["--model", agent.model]
        if options.get("max_turns"):
            argv += ["--max-turns", str(int(options["max_turns"]))]
        argv += ["--permission-mode", str(options.get("permission_mode") or DEFAULT_PERMISSION_MODE)]
        if allowed := _tool_list(options.get("allowed_tools")):
            argv += ["--allowedTools", ",".join(allowed)]
        if disallowed := _tool_list(options.get("disallowed_tools")):
            argv += ["--disallowedTools", ",".join(disallowed)]
        context = compose_context(request)
        if len(context) > SYSTEM_PROMPT_CHARS:
            context = context[:SYSTEM_PROMPT_CHARS]
        argv += ["--append-system-prompt", context]
        if request.session_id and request.iteration > 1 and options.get("resume", True):
            argv += ["--resume", request.session_id]

        env = base_environment(request)
        auth = str(options.get("auth") or "auto")
        if auth == "subscription":
            for var in API_KEY_VARS:
                env.pop(var, None)
        elif auth not in ("auto", "api_key"):
            raise ValueError(f"claude-code: options.auth must be auto, api_key or subscription, not {auth!r}")
        return AgentInvocation(argv=argv, env=env, stdin=iteration_prompt(request).encode())

    def new_parser(self) -> ClaudeStreamParser:
        return ClaudeStreamParser(model=self._model)
