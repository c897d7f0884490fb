"""Typed profile errors that say which profile, which file and line, and which key is wrong.

The API maps them to its envelope (422 for an invalid or unknown profile, 404 for a missing
one on the profile routes, 409 for a conflict); the CLI prints `str(error)` as its one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ProfileProblem:
    """One thing wrong with a profile. `key` is a dotted path (`convergence.strategy`), "" for the whole file."""

    key: str
    message: str
    line: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "message": self.message, "line": self.line}


class ProfileError(ValueError):
    """A profile that cannot be parsed, validated or resolved."""

    def __init__(self, profile: str | None, source: str | None, problems: list[ProfileProblem]) -> None:
        self.profile, self.source, self.problems = profile, source, list(problems)
        super().__init__(self._render())

    def _render(self) -> str:
        head = f"profile {self.profile!r}" if self.profile else "profile"
        parts = []
        for problem in self.problems or [ProfileProblem("", "invalid")]:
            where = ", ".join(x for x in (self.source, f"line {problem.line}" if problem.line else None) if x)
            key = f"`{problem.key}`: " if problem.key else ""
            parts.append(f"{head}{f' ({where})' if where else ''}: {key}{problem.message}")
        return "; ".join(parts)

    def details(self) -> list[dict[str, Any]]:
        return [{"profile": self.profile, "source": self.source, **p.as_dict()} for p in self.problems]


class ProfileNotFound(ProfileError):
    """No profile of that name among the built-ins and the user profiles."""

    def __init__(self, name: str, available: list[str]) -> None:
        self.name, self.available = name, available
        message = f"no profile named {name!r}; available: {', '.join(available) or 'none'}"
        super().__init__(None, None, [ProfileProblem("", message)])

    def _render(self) -> str:
        return self.problems[0].message


class ProfileConflict(ProfileError):
    """The change would clash with what exists: a taken name, a built-in, a profile others extend."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        super().__init__(name, None, [ProfileProblem("", message)])

    def _render(self) -> str:
        return self.problems[0].message
