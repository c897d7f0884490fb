"""A work-order request plus its profile: the fully resolved request the workflow receives.

Precedence, lowest first: work-order defaults, then the resolved profile (with its own
`extends` chain), then the fields the caller actually set (`model_dump(exclude_unset=True)`,
so a default pydantic filled in never overrides the profile). Mappings merge key by key;
lists and plain values are replaced. The result is validated again as a whole, because a
caller's override and a profile's value can be valid alone and clash together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from agentgate.models import WorkOrderRequest
from agentgate.profiles.errors import ProfileError, ProfileNotFound
from agentgate.profiles.merge import deep_merge
from agentgate.profiles.store import ProfileStore, ResolvedProfile


@dataclass(frozen=True)
class FieldProblem:
    """A problem with one request field (dotted path, without the `body.` prefix)."""

    field: str
    message: str


class ProfileApplyError(ValueError):
    """The request cannot be combined with its profile; each problem names a request field."""

    def __init__(self, problems: list[FieldProblem], available: list[str] | None = None) -> None:
        self.problems, self.available = problems, available
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))


def _field(loc: tuple[Any, ...]) -> str:
    # pydantic's union-branch tags (`function-after[...]`, the source `type`) mean nothing to callers.
    tags = ("local", "git", "github", "fresh")
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and ("[" in p or p in tags)))


def apply_profile(request: WorkOrderRequest, store: ProfileStore) -> tuple[WorkOrderRequest, ResolvedProfile | None]:
    """The request with its profile applied, and the resolved profile (None when the request names none)."""
    if request.profile is None:
        return request, None
    name = request.profile
    try:
        resolved = store.resolve(name)
    except ProfileNotFound as exc:
        raise ProfileApplyError([FieldProblem("profile", str(exc))], available=exc.available) from None
    except ProfileError as exc:
        raise ProfileApplyError([FieldProblem("profile", f"profile {name!r} cannot be used: {exc}")]) from None
    overrides = request.model_dump(mode="json", exclude_unset=True)
    merged = deep_merge(resolved.settings, overrides)
    try:
        result = WorkOrderRequest.model_validate(merged)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
            problems.append(FieldProblem(_field(tuple(err.get("loc", ()))), f"{msg} (with profile {name!r} applied)"))
        raise ProfileApplyError(problems) from None
    if result.gate_plan_source == "profile" and not result.gates:
        raise ProfileApplyError(
            [
                FieldProblem(
                    "gates",
                    f"gate_plan_source is 'profile' but profile {name!r} defines no gates and the request gives none",
                )
            ]
        )
    return result, resolved
