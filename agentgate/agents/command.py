"""The `command` driver: any program, run by the shell in the workspace.

It knows nothing of the program's output format, so every line is kept as an `output`
event and the exit code decides success.
"""

from __future__ import annotations

from agentgate.agents.base import AgentEvent, AgentInvocation, AgentRequest, ParsedRun, base_environment


class PlainOutputParser:
    def __init__(self) -> None:
        self._last_line: str | None = None

    def feed(self, stream: str, line: str) -> list[AgentEvent]:
        if stream == "stdout" and line.strip():
            self._last_line = line
        return [AgentEvent(kind="output", stream=stream, text=line)]

    def stop_reason(self) -> str | None:
        return None

    def finish(self) -> ParsedRun:
        return ParsedRun(final_message=self._last_line)


class CommandDriver:
    name = "command"

    def build_invocation(self, request: AgentRequest) -> AgentInvocation:
        command = request.work_order.agent.command
        if not command:
            raise ValueError("the command driver needs agent.command")
        return AgentInvocation(argv=["/bin/sh", "-c", command], env=base_environment(request))

    def new_parser(self) -> PlainOutputParser:
        return PlainOutputParser()
