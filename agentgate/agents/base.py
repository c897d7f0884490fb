"""The agent driver protocol: how a driver starts its CLI and how it reads the output.

A driver turns an `AgentRequest` into an `AgentInvocation` (argv, environment, stdin) and
supplies a fresh `OutputParser` per run. The build activity owns the process (start,
stream, heartbeat, stop); drivers never touch processes, so process control is written
once and every driver gets it.

The child's environment is built by `base_environment`: the allowlist below, AgentGate's
own `AGENTGATE_*` variables, the secrets the work order names, and nothing else — a
worker's cloud credentials must not leak into an agent that runs arbitrary commands.
A work order names variables to copy from the worker's environment with
`agent.options["env_passthrough"] = ["ANTHROPIC_API_KEY", ...]`; a named variable the
worker does not have is simply absent (the CLI then reports its own, classified, error).
Drivers may remove variables afterwards (claude-code's subscription mode drops API keys).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from agentgate.models import BuildError, TokenUsage, WorkOrder
from agentgate.sandbox.policy import DELIVERY_ONLY_SECRETS

# Variables a child agent may inherit from the worker; everything else must be named.
ENV_ALLOWLIST = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR", "USER", "LOGNAME", "SHELL", "TZ")


class ToolCall(BaseModel):
    id: str | None = None
    name: str
    input: Any = None
    output: str | None = None
    is_error: bool = False
    started_at_ms: int | None = None
    duration_ms: int | None = None


class AgentEvent(BaseModel):
    """One normalized thing the agent did, streamed live and appended to events.jsonl."""

    kind: Literal["message", "tool_call", "tool_result", "usage", "output"]
    text: str | None = None
    tool: ToolCall | None = None
    tokens: TokenUsage | None = None
    cost_usd: float | None = None
    turns: int | None = Field(default=None, description="Turns so far, when the agent's stream says.")
    stream: str | None = None


class AgentResult(BaseModel):
    """Everything known about one agent run: persisted whole as `agent-<N>.json`."""

    driver: str
    iteration: int
    argv: list[str] = Field(default_factory=list)
    success: bool
    exit_code: int | None
    duration_ms: int
    session_id: str | None = None
    model: str | None = None
    turns: int | None = None
    tokens: TokenUsage = Field(default_factory=TokenUsage)
    cost_usd: float | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    final_message: str | None = None
    stdout_ref: str
    stderr_ref: str
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    stdout_excerpt: str = ""
    stderr_excerpt: str = ""
    unparsed_lines: int = 0
    timed_out: bool = False
    stalled: bool = False
    canceled: bool = False
    stop_reason: str | None = Field(
        default=None, description="Why AgentGate stopped a CLI that would not end by itself (e.g. no network)."
    )
    survivors: list[int] = Field(default_factory=list, description="PIDs still alive after termination.")
    error: BuildError | None = None
    sandbox: dict[str, Any] = Field(default_factory=dict, description="Provider, network and limits in force.")


@dataclass
class AgentRequest:
    work_order: WorkOrder
    workspace: str
    iteration: int
    prompt: str
    prompt_file: str
    feedback_file: str | None
    session_id: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class AgentInvocation:
    argv: list[str]
    env: dict[str, str]
    stdin: bytes | None = None


@dataclass
class ParsedRun:
    """What a parser learned from the stream, merged into the AgentResult by the activity."""

    session_id: str | None = None
    model: str | None = None
    turns: int | None = None
    tokens: TokenUsage = field(default_factory=TokenUsage)
    cost_usd: float | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    final_message: str | None = None
    is_error: bool = False
    error_message: str | None = None
    error_kind: str | None = None
    api_error_status: int | None = None
    unparsed_lines: int = 0
    stop_reason: str | None = None


class OutputParser(Protocol):
    def feed(self, stream: str, line: str) -> list[AgentEvent]: ...

    def finish(self) -> ParsedRun: ...

    def stop_reason(self) -> str | None:
        """Why the CLI should be stopped now although it still runs (None: let it run).

        For a CLI that would otherwise wait forever on something only a person can fix — Codex
        "waiting for network" retries without end. The build activity polls this while the agent
        runs and stops the process tree when it says so; the run is then classified like any
        other failure, from what the parser recorded.
        """
        ...


class AgentDriver(Protocol):
    name: str

    def build_invocation(self, request: AgentRequest) -> AgentInvocation: ...

    def new_parser(self) -> OutputParser: ...


def decode_json_line(run: ParsedRun, stream: str, line: str) -> tuple[dict[str, Any] | None, list[AgentEvent]]:
    """The first step every JSON-lines parser shares: (the decoded object, or None with the events
    to emit instead). stderr and non-JSON lines are kept as output; a non-object line is counted."""
    if stream != "stdout":
        return None, ([AgentEvent(kind="output", stream=stream, text=line)] if line.strip() else [])
    if not line.strip():
        return None, []
    try:
        data = json.loads(line)
    except ValueError:
        run.unparsed_lines += 1
        return None, [AgentEvent(kind="output", stream=stream, text=line)]
    if not isinstance(data, dict):
        run.unparsed_lines += 1
        return None, []
    return data, []


def base_environment(request: AgentRequest) -> dict[str, str]:
    """The allowlisted worker environment plus AgentGate's own variables."""
    env = {k: v for k, v in os.environ.items() if k in ENV_ALLOWLIST}
    env.setdefault("PATH", os.defpath)
    env.update(
        AGENTGATE_PROMPT_FILE=request.prompt_file,
        AGENTGATE_ITERATION=str(request.iteration),
        AGENTGATE_WORK_ORDER_ID=request.work_order.id,
        AGENTGATE_WORKSPACE=request.workspace,
    )
    if request.feedback_file:
        env["AGENTGATE_FEEDBACK_FILE"] = request.feedback_file
    for name in passthrough_names(request.work_order):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(request.extra_env)
    return env


def passthrough_names(order: WorkOrder) -> list[str]:
    """The worker variables a work order asked to pass through (`agent.options["env_passthrough"]`)."""
    names = order.agent.options.get("env_passthrough") or []
    if isinstance(names, str):
        names = [n for n in names.replace(",", " ").split() if n]
    # Never the process-tree marker, and never the delivery token (that one is for the delivery phase only).
    refused = {"AGENTGATE_PROCESS_TOKEN", *DELIVERY_ONLY_SECRETS}
    return [str(n) for n in names if str(n) and str(n) not in refused]
