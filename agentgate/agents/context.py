"""What an agent CLI is told besides the task: the project's own instructions, the gates, the last feedback.

Shared by the drivers so that every agent sees the same context, whether the CLI takes it
as an appended system prompt (Claude Code) or only as part of the prompt (Codex, OpenCode).
Everything is bounded: a command-line argument on Linux may not exceed 128 KiB, and an
oversized context costs tokens on every turn.
"""

from __future__ import annotations

from pathlib import Path

from agentgate.agents.base import AgentRequest

INSTRUCTION_FILES = ("AGENTS.md", "CLAUDE.md")
FILE_CHARS = 16_000
FEEDBACK_CHARS = 40_000


def _bounded(text: str, limit: int) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    return "[… earlier part omitted …]\n" + text[-limit:]


def workspace_instructions(workspace: str, names: tuple[str, ...] = INSTRUCTION_FILES) -> str | None:
    parts = []
    for name in names:
        path = Path(workspace) / name
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if text.strip():
            parts.append(f"## {name} (from the repository)\n\n{_bounded(text, FILE_CHARS)}")
    return "\n\n".join(parts) or None


def gates_summary(request: AgentRequest) -> str | None:
    gates = request.work_order.gates
    if not gates:
        return None
    lines = ["## Gates", "", "AgentGate accepts the work only when every one of these commands succeeds:", ""]
    for gate in gates:
        expect = "" if gate.expected_exit_code == 0 else f" (expected exit code {gate.expected_exit_code})"
        lines.append(f"- `{gate.command}`{expect}")
    return "\n".join(lines)


def feedback_text(request: AgentRequest) -> str | None:
    if not request.feedback_file:
        return None
    try:
        text = Path(request.feedback_file).read_text(errors="replace")
    except OSError:
        return None
    return _bounded(text, FEEDBACK_CHARS) or None


def compose_context(request: AgentRequest, *, include_instructions: bool = True) -> str:
    """The context block: repository instructions, gates, and the previous iteration's feedback."""
    parts = ["# AgentGate", f"You are working on iteration {request.iteration} of an AgentGate work order."]
    if include_instructions and (instructions := workspace_instructions(request.workspace)):
        parts.append(instructions)
    if summary := gates_summary(request):
        parts.append(summary)
    if feedback := feedback_text(request):
        parts.append("## Feedback from the previous iteration\n\n" + feedback)
    return "\n\n".join(parts)


def iteration_prompt(request: AgentRequest) -> str:
    """The user prompt: the task, plus (from iteration 2 on) the instruction to act on the feedback."""
    if request.iteration <= 1 or not request.feedback_file:
        return request.prompt
    return (
        f"{request.prompt}\n\nThis is iteration {request.iteration}. The gates did not pass after your previous "
        "attempt; fix what the AgentGate feedback describes, then stop."
    )
