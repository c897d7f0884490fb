"""Agent drivers, chosen by name in the work order (`agent.driver`)."""

from __future__ import annotations

from agentgate.agents.base import AgentDriver
from agentgate.agents.claude_code import ClaudeCodeDriver
from agentgate.agents.codex import CodexDriver
from agentgate.agents.command import CommandDriver
from agentgate.agents.opencode import OpenCodeDriver

_DRIVERS: dict[str, type] = {
    "command": CommandDriver,
    "claude-code": ClaudeCodeDriver,
    "codex": CodexDriver,
    "opencode": OpenCodeDriver,
}


class UnknownDriverError(LookupError):
    pass


def register_driver(name: str, driver_cls: type) -> None:
    _DRIVERS[name] = driver_cls


def get_driver(name: str) -> AgentDriver:
    try:
        return _DRIVERS[name]()
    except KeyError:
        raise UnknownDriverError(
            f"agent driver {name!r} is not available on this worker; available: {', '.join(sorted(_DRIVERS))}"
        ) from None


def available_drivers() -> list[str]:
    return sorted(_DRIVERS)
