"""The `codex` driver: OpenAI Codex CLI in `codex exec --json` mode.

Command line: `codex exec --json --skip-git-repo-check --sandbox <mode> [-m model] [-c k=v…] -`
(prompt on stdin), and from iteration 2 on `codex exec resume --json … <thread_id> -`, so
the agent continues its own thread. `resume` does not accept `--sandbox`, so the sandbox
goes in as `-c sandbox_mode="…"` there. Options: `sandbox` (default `workspace-write`),
`config` (a dict of extra `-c key=value` overrides, values written as TOML).

Codex has no flag to append to the system prompt; it reads `AGENTS.md` itself, so the
gates and the previous feedback go into the prompt.

The stream (`codex-rs/exec/src/exec_events.rs`): `thread.started` (thread_id), `turn.started`,
`item.started|updated|completed` with typed items (agent_message, plan, reasoning,
command_execution with command / aggregated_output / exit_code / status, file_change,
mcp_tool_call, collab_tool_call, web_search, todo_list, error), `item.plan.delta`,
`request_user_input`, `turn.completed` with usage (input_tokens including cached_input_tokens,
output_tokens), `turn.failed` and `error`. `error` events also announce reconnect
attempts, which are not failures by themselves. Codex reports no cost and no model, so the
cost comes from the price table for the model the work order asked for.

No network: after its bounded reconnects (`Reconnecting... 1/5` … `5/5`) Codex falls back
to HTTPS and then prints `Reconnecting... waiting for network (…)` every few seconds and
never exits — with or without credentials, since it cannot reach anyone to refuse them
(observed with codex-cli 0.169). The parser asks for the process to be stopped at the
first such line (`stop_reason`), and the run is classified as a dropped connection, which
Temporal retries with backoff. `options.wait_for_network: true` lets Codex wait instead
(the iteration and idle timeouts still apply).
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

DEFAULT_SANDBOX = "workspace-write"
TOOL_ITEMS = ("command_execution", "file_change", "mcp_tool_call", "web_search", "collab_tool_call")
NETWORK_WAIT = "waiting for network"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(str(value))  # a JSON string literal is a valid TOML basic string


def _tool_name(item: dict) -> str:
    itype = item.get("type")
    if itype == "mcp_tool_call":
        return f"mcp:{item.get('server', '?')}/{item.get('tool', '?')}"
    if itype == "collab_tool_call":
        return f"collab:{item.get('tool', '?')}"
    return str(itype)


def _tool_input(item: dict) -> Any:
    itype = item.get("type")
    if itype == "command_execution":
        return {"command": item.get("command")}
    if itype == "file_change":
        return {"changes": item.get("changes") or []}
    if itype == "mcp_tool_call":
        return item.get("arguments")
    if itype == "web_search":
        return {"query": item.get("query")}
    if itype == "collab_tool_call":
        return {"prompt": item.get("prompt"), "receiver_thread_ids": item.get("receiver_thread_ids") or []}
    return None


def _tool_output(item: dict) -> tuple[str | None, bool]:
    itype = item.get("type")
    status = item.get("status")
    if itype == "command_execution":
        exit_code = item.get("exit_code")
        failed = status in ("failed", "declined") or (isinstance(exit_code, int) and exit_code != 0)
        return item.get("aggregated_output"), failed
    if itype == "file_change":
        changes = item.get("changes") or []
        text = "\n".join(f"{c.get('kind', '?')} {c.get('path', '?')}" for c in changes if isinstance(c, dict))
        return text, status == "failed"
    if itype == "mcp_tool_call":
        if isinstance(item.get("error"), dict):
            return str(item["error"].get("message")), True
        result = item.get("result") or {}
        parts = [
            str(c.get("text")) if isinstance(c, dict) and "text" in c else json.dumps(c)
            for c in result.get("content") or []
        ]
        return "\n".join(parts), status == "failed"
    if itype == "collab_tool_call":
        states = item.get("agents_states") or {}
        text = "\n".join(f"{k}: {v.get('status')}" for k, v in states.items() if isinstance(v, dict))
        return text, status == "failed"
    return None, False


class CodexJsonParser:
    """Reads `codex exec --json`; never raises on a line it does not know."""

    def __init__(self, model: str | None = None, *, wait_for_network: bool = False) -> None:
        self.run = ParsedRun(model=model)
        self._wait_for_network = wait_for_network
        self._tools: dict[str, ToolCall] = {}
        self._started = time.monotonic()
        self._turns = 0
        self._last_error: str | None = None

    def _now_ms(self) -> int:
        return int((time.monotonic() - self._started) * 1000)

    def feed(self, stream: str, line: str) -> list[AgentEvent]:
        data, passthrough = decode_json_line(self.run, stream, line)
        if data is None:
            return passthrough
        kind = data.get("type")
        if kind == "thread.started":
            self.run.session_id = data.get("thread_id") or self.run.session_id
            return []
        if kind == "turn.started":
            self._turns += 1
            return []
        if kind == "turn.completed":
            return self._usage(data.get("usage"))
        if kind == "turn.failed":
            error = data.get("error") if isinstance(data.get("error"), dict) else {}
            self.run.is_error = True
            self.run.error_message = str(error.get("message") or self._last_error or "the turn failed")
            return [AgentEvent(kind="message", text=f"turn failed: {self.run.error_message}")]
        if kind == "error":
            message = str(data.get("message") or "")
            self._last_error = message
            if not message.startswith("Reconnecting"):
                self.run.is_error = True
                self.run.error_message = message
            elif NETWORK_WAIT in message and not self._wait_for_network:
                # Codex would wait for the network forever: stop it, a failure Temporal may retry.
                self.run.is_error = True
                self.run.error_message = message
                self.run.stop_reason = f"codex is {NETWORK_WAIT} and would retry without end"
            return [AgentEvent(kind="message", text=f"error: {message}")]
        if kind in ("item.started", "item.updated", "item.completed"):
            item = data.get("item")
            if isinstance(item, dict):
                return self._item(kind, item)
        if kind == "item.plan.delta":  # the plan item arrives whole on item.completed
            return []
        if kind == "request_user_input":  # nobody can answer in exec mode; say what it asked
            asked = data.get("questions") or []
            questions = [str(q.get("question", q)) if isinstance(q, dict) else str(q) for q in asked]
            return [AgentEvent(kind="message", text="asked for input: " + " | ".join(questions))]
        self.run.unparsed_lines += 1
        return []

    def _usage(self, raw: Any) -> list[AgentEvent]:
        if not isinstance(raw, dict):
            return []
        cached = int(raw.get("cached_input_tokens") or 0)
        # OpenAI counts cached tokens inside input_tokens; keep the kinds disjoint like Anthropic's.
        usage = TokenUsage(
            input=max(0, int(raw.get("input_tokens") or 0) - cached),
            output=int(raw.get("output_tokens") or 0),
            cache_read=cached,
        )
        self.run.tokens = self.run.tokens + usage
        cost = estimate_cost(self.run.model, self.run.tokens)
        return [AgentEvent(kind="usage", tokens=usage, cost_usd=cost, turns=self._turns)]

    def _item(self, kind: str, item: dict) -> list[AgentEvent]:
        itype = item.get("type")
        item_id = str(item.get("id") or "")
        if itype in TOOL_ITEMS:
            events: list[AgentEvent] = []
            call = self._tools.get(item_id)
            if call is None:
                call = ToolCall(
                    id=item_id, name=_tool_name(item), input=_tool_input(item), started_at_ms=self._now_ms()
                )
                self._tools[item_id] = call
                self.run.tool_calls.append(call)
                events.append(AgentEvent(kind="tool_call", tool=call))
            if kind == "item.completed":
                call.output, call.is_error = _tool_output(item)
                if call.started_at_ms is not None:
                    call.duration_ms = max(0, self._now_ms() - call.started_at_ms)
                events.append(AgentEvent(kind="tool_result", tool=call))
            return events
        if kind != "item.completed":
            return []
        if itype == "agent_message":
            text = str(item.get("text", ""))
            if text.strip():
                self.run.final_message = text
            return [AgentEvent(kind="message", text=text)]
        if itype in ("reasoning", "plan"):
            return [AgentEvent(kind="message", text=str(item.get("text", "")))]
        if itype == "todo_list":
            todo = [f"[{'x' if t.get('completed') else ' '}] {t.get('text')}" for t in item.get("items") or []]
            return [AgentEvent(kind="message", text="\n".join(todo))]
        if itype == "error":
            return [AgentEvent(kind="message", text=f"warning: {item.get('message')}")]
        self.run.unparsed_lines += 1
        return []

    def stop_reason(self) -> str | None:
        return self.run.stop_reason

    def finish(self) -> ParsedRun:
        run = self.run
        run.turns = self._turns or None
        run.cost_usd = estimate_cost(run.model, run.tokens)
        if run.is_error and not run.error_message:
            run.error_message = self._last_error
        elif not run.is_error and self._last_error and run.final_message is None:
            run.error_message = self._last_error  # the process's exit code decides; this says why
        return run


class CodexDriver:
    name = "codex"

    def __init__(self) -> None:
        self._model: str | None = None
        self._wait_for_network = False

    def build_invocation(self, request: AgentRequest) -> AgentInvocation:
        agent = request.work_order.agent
        options = agent.options
        self._model = agent.model or options.get("pricing_model")
        self._wait_for_network = bool(options.get("wait_for_network", False))
        sandbox = str(options.get("sandbox") or DEFAULT_SANDBOX)
        resume = bool(request.session_id and request.iteration > 1 and options.get("resume", True))
        argv = [str(options.get("binary") or "codex"), "exec"]
        if resume:
            argv += ["resume"]
        argv += ["--json", "--skip-git-repo-check"]
        if resume:
            argv += ["-c", f"sandbox_mode={_toml_value(sandbox)}"]
        else:
            argv += ["--sandbox", sandbox]
        if agent.model:
            argv += ["--model", agent.model]
        for key, value in (options.get("config") or {}).items():
            argv += ["-c", f"{key}={_toml_value(value)}"]
        if resume:
            argv += [str(request.session_id)]
        argv += ["-"]
        prompt = iteration_prompt(request) + "\n\n" + compose_context(request, include_instructions=False)
        return AgentInvocation(argv=argv, env=base_environment(request), stdin=prompt.encode())

    def new_parser(self) -> CodexJsonParser:
        return CodexJsonParser(model=self._model, wait_for_network=self._wait_for_network)
