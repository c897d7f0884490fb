"""What a profile file may contain, and parsing that keeps line numbers for error messages.

A profile holds the *harness* fields of a work order — limits, gates, convergence, delivery,
budgets, sandbox, agent defaults — never the task itself (prompt, workspace, labels). Each
harness field is validated by the very field definition of `WorkOrderRequest`, so a profile
can never hold a value a work order would reject, and a new constraint on the model applies
to profiles at once. Unknown keys are errors (with a "did you mean"), because a misspelt
limit silently ignored is how a run ends up with the default it was meant to avoid.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from agentgate.models import PROFILE_NAME_PATTERN, WorkOrderRequest
from agentgate.profiles.errors import ProfileError, ProfileProblem

# Work-order fields a profile may set (besides `agent`, whose profile form is `AgentDefaults`).
HARNESS_FIELDS: tuple[str, ...] = (
    "max_iterations",
    "max_wall_clock_seconds",
    "verify_timeout_seconds",
    "priority",
    "gates",
    "gate_plan_source",
    "skip_levels",
    "protected_paths",
    "max_total_tokens",
    "max_cost_usd",
    "convergence",
    "delivery",
    "sandbox",
)
# Harness fields owned by other features; a profile may set them while the work-order model has them.
_OPTIONAL_HARNESS_FIELDS = ("max_queue_seconds", "host_start_timeout_seconds")
HARNESS_FIELDS += tuple(f for f in _OPTIONAL_HARNESS_FIELDS if f in WorkOrderRequest.model_fields)
META_KEYS: tuple[str, ...] = ("name", "description", "extends")
PROFILE_KEYS: tuple[str, ...] = (*META_KEYS, *HARNESS_FIELDS, "agent")
NAME_RE = re.compile(PROFILE_NAME_PATTERN)


class AgentDefaults(BaseModel):
    """Agent settings a profile may default. The driver and command stay the caller's choice."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    model: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


def _settings_model() -> type[BaseModel]:
    source = WorkOrderRequest.model_fields
    fields: dict[str, Any] = {name: (source[name].annotation, copy.copy(source[name])) for name in HARNESS_FIELDS}
    return create_model(
        "ProfileSettings",
        __config__=ConfigDict(extra="forbid"),
        __doc__="The resolved harness settings of a profile; unset fields take the work-order defaults.",
        agent=(AgentDefaults, Field(default_factory=AgentDefaults)),
        **fields,
    )


ProfileSettings = _settings_model()


def full_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Validate merged settings and return every harness field, defaults filled in, as JSON data."""
    return ProfileSettings.model_validate(settings).model_dump(mode="json")


@dataclass
class ProfileDocument:
    """One profile as written (a YAML file or a JSON body), before inheritance is applied."""

    name: str
    data: dict[str, Any]
    source: str
    builtin: bool = False
    root: yaml.Node | None = field(default=None, repr=False)

    @property
    def extends(self) -> str | None:
        return self.data.get("extends")

    @property
    def description(self) -> str | None:
        return self.data.get("description")

    @property
    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.data.items() if k not in META_KEYS}

    def line_of(self, loc: tuple[Any, ...] | list[Any]) -> int | None:
        """1-based line of the key (or item) at `loc`, when the document came from YAML."""
        return _line_at(self.root, loc) if self.root is not None else None

    def error(self, key: str, message: str, loc: tuple[Any, ...] | None = None) -> ProfileError:
        line = self.line_of(loc if loc is not None else tuple(p for p in key.split(".") if p))
        return ProfileError(self.name, self.source, [ProfileProblem(key, message, line)])


def _line_at(root: yaml.Node, loc: tuple[Any, ...] | list[Any]) -> int | None:
    node: yaml.Node = root
    line = root.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(part)), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _duplicate_key(node: yaml.Node, path: str = "") -> tuple[str, int] | None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(getattr(key, "value", ""))
            full = f"{path}.{name}" if path else name
            if name in seen:
                return full, key.start_mark.line + 1
            seen.add(name)
            if found := _duplicate_key(value, full):
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            if found := _duplicate_key(item, f"{path}[{i}]"):
                return found
    return None


def parse_profile_text(text: str, name: str, source: str, *, builtin: bool = False) -> ProfileDocument:
    """Parse and check one YAML profile; every problem names the file, the line and the key."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ProfileError(name, source, [ProfileProblem("", f"YAML syntax error: {exc.problem}", line)]) from exc
    except yaml.YAMLError as exc:
        raise ProfileError(name, source, [ProfileProblem("", f"YAML error: {exc}")]) from exc
    if root is None:  # an empty file is a profile that sets nothing
        data = {}
    elif not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        raise ProfileError(name, source, [ProfileProblem("", "the top level must be a mapping of keys", 1)])
    elif dup := _duplicate_key(root):
        raise ProfileError(name, source, [ProfileProblem(dup[0], "duplicate key", dup[1])])
    doc = ProfileDocument(name=name, data=data, source=source, builtin=builtin, root=root)
    check_document(doc)
    return doc


def profile_from_mapping(data: Any, name: str, source: str) -> ProfileDocument:
    """A profile given as data (a JSON body): the same checks as a file, without line numbers."""
    if not isinstance(data, dict):
        raise ProfileError(name, source, [ProfileProblem("", "a profile must be a JSON object of keys")])
    doc = ProfileDocument(name=name, data=copy.deepcopy(data), source=source)
    check_document(doc)
    return doc


def check_document(doc: ProfileDocument) -> None:
    """Keys known, meta keys well-formed, each harness field valid on its own (inheritance comes later)."""
    problems: list[ProfileProblem] = []
    for key in doc.data:
        if not isinstance(key, str) or key not in PROFILE_KEYS:
            hint = difflib.get_close_matches(str(key), PROFILE_KEYS, n=1)
            extra = f" (did you mean `{hint[0]}`?)" if hint else f"; known keys: {', '.join(PROFILE_KEYS)}"
            problems.append(ProfileProblem(str(key), f"unknown key{extra}", doc.line_of((key,))))
    given_name = doc.data.get("name")
    if "name" in doc.data and given_name != doc.name:
        problems.append(
            ProfileProblem("name", f"is {given_name!r} but the profile is named {doc.name!r}", doc.line_of(("name",)))
        )
    description = doc.data.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 1000):
        line = doc.line_of(("description",))
        problems.append(ProfileProblem("description", "must be text of at most 1000 characters", line))
    if "extends" in doc.data:
        parent = doc.data["extends"]
        if not isinstance(parent, str) or not NAME_RE.match(parent):
            problems.append(
                ProfileProblem(
                    "extends",
                    f"must be a profile name matching {PROFILE_NAME_PATTERN}, got {parent!r}",
                    doc.line_of(("extends",)),
                )
            )
        elif parent == doc.name:
            problems.append(ProfileProblem("extends", f"cycle: {doc.name} → {doc.name}", doc.line_of(("extends",))))
    for loc in _non_finite(doc.data):  # YAML has .inf and .nan; JSON (and the config hash) has neither
        problems.append(ProfileProblem(".".join(map(str, loc)), "must be a finite number", doc.line_of(loc)))
    known = {k: v for k, v in doc.settings.items() if k in PROFILE_KEYS}
    try:
        ProfileSettings.model_validate(known)
    except ValidationError as exc:
        problems.extend(validation_problems(exc, doc))
    if problems:
        raise ProfileError(doc.name, doc.source, problems)


def _non_finite(value: Any, loc: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, float) and not math.isfinite(value):
        return [loc]
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in _non_finite(v, (*loc, k))]
    if isinstance(value, list):
        return [found for i, v in enumerate(value) for found in _non_finite(v, (*loc, i))]
    return []


def validation_problems(exc: ValidationError, doc: ProfileDocument | None = None) -> list[ProfileProblem]:
    """pydantic errors as problems: dotted key without union tags, message without pydantic's prefix."""
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err.get("loc", ()) if not (isinstance(p, str) and "[" in p))
        key = ".".join(str(p) for p in loc)
        message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            message = "unknown key"
        problems.append(ProfileProblem(key, message, doc.line_of(loc) if doc else None))
    return problems
