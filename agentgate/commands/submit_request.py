"""The body `agentgate submit` sends: a work-order file, then `--set` assignments, then the flags.

Every field of a work order (agentgate/models.py `WorkOrderRequest`, with its delivery,
convergence, sandbox and agent sub-models) can be given without a flag of its own:

1. `--file PATH` (YAML or JSON, `-` for stdin) is the base: a mapping of work-order fields;
2. each `--set dotted.path=value` is applied over it, in order; the value is read as YAML, so
   `5`, `true`, `[a, b]` and `{k: v}` are numbers, booleans, lists and mappings — except where
   the field is text (a string, a choice, an enum), which takes the text as typed, so
   `--set task_prompt=Fix: the bug` or `--set delivery.mode=no` cannot turn into a mapping or a
   boolean (quote it, `'"..."'`, to force YAML);
3. the first-class flags (`--prompt`, `--path`, `--priority`, ...) are applied last and win.

Only what the caller gave is sent: unset fields take the profile's values (`--profile`) or the
work-order defaults on the server. Problems found here (an unknown field, a value YAML cannot
read, a file that is not a mapping) are `SubmitRequestError`s with a one-line message; whether
a value is valid is left to the API, whose 422 names the field.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import types
import typing
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import BaseModel

from agentgate.models import WorkOrderRequest
from agentgate.workspace_sources import SourceFormError, normalize_workspace_source

FIELDS: tuple[str, ...] = tuple(WorkOrderRequest.model_fields)


class SubmitRequestError(ValueError):
    """Bad input for `agentgate submit`, as one line that says what to fix."""


@dataclass
class SubmitFlags:
    """The first-class flags of `agentgate submit`; None (or empty) means "not given"."""

    prompt: str | None = None
    path: Path | None = None
    git_url: str | None = None
    github: str | None = None
    branch: str | None = None
    agent: str | None = None
    agent_command: str | None = None
    model: str | None = None
    gates: list[str] = field(default_factory=list)
    max_iterations: int | None = None
    max_wall_clock: float | None = None
    priority: int | None = None
    fairness_key: str | None = None
    max_queue_seconds: float | None = None
    max_tokens: int | None = None
    max_cost: float | None = None
    profile: str | None = None
    labels: list[str] = field(default_factory=list)
    strategy: str | None = None
    delivery: str | None = None


# -- the file ---------------------------------------------------------------------------------


def load_file(spec: str, stdin: TextIO | None = None) -> dict[str, Any]:
    """The work order in `spec` (a path, or `-` for stdin): a mapping of known work-order fields."""
    name = "stdin" if spec == "-" else spec
    if spec == "-":
        text = (stdin or sys.stdin).read()
    else:
        try:
            text = Path(spec).expanduser().read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SubmitRequestError(f"--file {spec}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SubmitRequestError(f"--file {spec}: cannot read it ({exc})") from None
    data = _parse_document(text, name)
    if data is None:
        raise SubmitRequestError(f"--file {name}: is empty; it must hold a mapping of work-order fields")
    if not isinstance(data, dict):
        raise SubmitRequestError(
            f"--file {name}: must hold a mapping of work-order fields (task_prompt: ..., agent: ...), "
            f"not a {_kind(data)}"
        )
    for key in data:
        if key not in FIELDS:
            raise SubmitRequestError(f"--file {name}: {_unknown_field(key)}")
    return data


def _parse_document(text: str, name: str) -> Any:
    try:
        return json.loads(text)  # JSON first: its tab-indented files are not YAML
    except ValueError:
        pass
    try:
        return _plain(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SubmitRequestError(f"--file {name}: not valid YAML or JSON{where}: {problem}") from None


# -- --set --------------------------------------------------------------------------------------


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """`dotted.path=value` → (["dotted", "path"], the value read as YAML, or as text for a text field)."""
    origin = f"--set {text}"
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep:
        raise SubmitRequestError(f"{origin}: expected FIELD=VALUE, e.g. --set max_iterations=5")
    if not key:
        raise SubmitRequestError(f"{origin}: the field name before '=' is empty")
    path = key.split(".")
    if any(not part for part in path):
        raise SubmitRequestError(f"{origin}: {key!r} has an empty part; write dotted names like delivery.mode")
    if path[0] not in FIELDS:
        raise SubmitRequestError(f"{origin}: {_unknown_field(path[0])}")
    if _is_text_field(path) and not raw.lstrip().startswith(("'", '"')):
        return path, raw
    try:
        return path, _plain(yaml.safe_load(raw))
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SubmitRequestError(f"{origin}: cannot read {raw!r} as a YAML value ({problem}); quote it") from None


def set_path(body: dict[str, Any], path: list[str], value: Any, origin: str) -> None:
    """Assign `value` at `path` in `body`, creating mappings on the way; a non-mapping in the way is an error."""
    node = body
    for depth, key in enumerate(path[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif key == "workspace_source" and depth == 0 and not isinstance(child, dict):
            child = node[key] = _canonical_source(child, origin)
        elif not isinstance(child, dict):
            where = ".".join(path[: depth + 1])
            raise SubmitRequestError(f"{origin}: cannot set a field inside {where}: it is a {_kind(child)}")
        node = child
    node[path[-1]] = value


def _canonical_source(value: Any, origin: str) -> dict[str, Any]:
    """A source given in a short form (a URL, a path) as its mapping, so one of its fields can be set."""
    try:
        canonical = normalize_workspace_source(value)
    except SourceFormError as exc:
        raise SubmitRequestError(f"{origin}: workspace_source: {exc}") from None
    return dict(canonical)


# -- all together -------------------------------------------------------------------------------


def build_request(
    base: dict[str, Any] | None = None, assignments: list[str] | None = None, flags: SubmitFlags | None = None
) -> dict[str, Any]:
    """The body to POST: `base` (the file), then each `--set`, then the flags; checks the required fields."""
    body: dict[str, Any] = json.loads(json.dumps(base or {}))  # a deep copy; the caller's data stays as it was
    for text in assignments or []:
        path, value = parse_assignment(text)
        set_path(body, path, value, f"--set {text}")
    _apply_flags(body, flags or SubmitFlags())
    _check_required(body)
    return body


def _apply_flags(body: dict[str, Any], flags: SubmitFlags) -> None:
    sources = [name for name, given in (("--path", flags.path), ("--git-url", flags.git_url),
                                        ("--github", flags.github)) if given is not None]  # fmt: skip
    if len(sources) > 1:
        raise SubmitRequestError(f"give only one workspace source, not {' and '.join(sources)}")
    if flags.path is not None:
        body["workspace_source"] = {"type": "local", "path": str(_local_repo(flags.path))}
    elif flags.git_url is not None:
        # Untyped on purpose: a github.com URL becomes a github source, so delivery can open pull requests.
        body["workspace_source"] = {"url": flags.git_url}
    elif flags.github is not None:
        body["workspace_source"] = {"type": "github", "repo": flags.github}
    if flags.branch is not None:
        source = body.get("workspace_source")
        if source is not None and not isinstance(source, dict):
            source = body["workspace_source"] = _canonical_source(source, "--branch")
        if source is None or source.get("type") in ("local", "fresh") or "path" in source:
            raise SubmitRequestError("--branch needs a git or GitHub source (--git-url URL or --github OWNER/REPO)")
        source["branch"] = flags.branch
    if flags.prompt is not None:
        body["task_prompt"] = flags.prompt
    given = (
        ("--agent", "agent.driver", flags.agent),
        ("--agent-command", "agent.command", flags.agent_command),
        ("--model", "agent.model", flags.model),
        ("--max-iterations", "max_iterations", flags.max_iterations),
        ("--max-wall-clock", "max_wall_clock_seconds", flags.max_wall_clock),
        ("--priority", "priority", flags.priority),
        ("--fairness-key", "fairness_key", flags.fairness_key),
        ("--max-queue-seconds", "max_queue_seconds", flags.max_queue_seconds),
        ("--max-tokens", "max_total_tokens", flags.max_tokens),
        ("--max-cost", "max_cost_usd", flags.max_cost),
        ("--profile", "profile", flags.profile),
        ("--strategy", "convergence.strategy", flags.strategy),
        ("--delivery", "delivery.mode", flags.delivery),
        ("--gate", "gates", list(flags.gates) or None),  # repeatable flags replace the file's list
        ("--label", "labels", list(flags.labels) or None),
    )
    for flag, dotted, value in given:
        if value is not None:
            set_path(body, dotted.split("."), value, flag)


def _local_repo(path: Path) -> Path:
    resolved = path.expanduser().resolve()
    if not resolved.is_dir():
        raise SubmitRequestError(f"--path {path}: no such directory")
    if not (resolved / ".git").exists():
        raise SubmitRequestError(f"--path {path}: not a git repository (run `git init` there first)")
    return resolved


def _check_required(body: dict[str, Any]) -> None:
    prompt = body.get("task_prompt")
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        raise SubmitRequestError("the task must not be empty: give --prompt TEXT (or task_prompt in --file)")
    if body.get("workspace_source") is None:
        raise SubmitRequestError(
            "no workspace source: give --path DIR, --git-url URL or --github OWNER/REPO (or workspace_source in --file)"
        )
    if body.get("agent") is None:
        raise SubmitRequestError(
            "no agent: give --agent-command CMD (the command driver) or --agent NAME (or agent in --file)"
        )


# -- helpers ------------------------------------------------------------------------------------


def _unknown_field(name: str) -> str:
    return f"unknown work-order field {name!r}; the fields are: {', '.join(FIELDS)}"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )


def _plain(value: Any) -> Any:
    """YAML's richer values as JSON ones: dates and times as ISO text, mapping keys as text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    return value


def _is_text_field(path: list[str]) -> bool:
    """Whether the field at `path` takes only text (str, a Literal of strings, a str Enum), in every branch."""
    candidates = _annotations_at(path)
    return bool(candidates) and all(_is_text(a) for a in candidates)


def _annotations_at(path: list[str]) -> list[Any]:
    """The possible types of the field at `path` (several below a union); [] when unknown or free-form."""
    current: list[Any] = [WorkOrderRequest]
    for key in path:
        following: list[Any] = []
        for ann in current:
            for member in _members(ann):
                if isinstance(member, type) and issubclass(member, BaseModel):
                    if key in member.model_fields:
                        following.append(member.model_fields[key].annotation)
                elif typing.get_origin(member) is dict:
                    args = typing.get_args(member)
                    if len(args) == 2:
                        following.append(args[1])
        if not following:
            return []
        current = following
    return current


def _members(ann: Any) -> list[Any]:
    """`Annotated[X, ...]` → X; `A | B | None` → [A, B]; anything else → [itself]."""
    if typing.get_origin(ann) is typing.Annotated:
        return _members(typing.get_args(ann)[0])
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        found: list[Any] = []
        for arg in typing.get_args(ann):
            if arg is not type(None):
                found.extend(_members(arg))
        return found
    return [ann]


def _is_text(ann: Any) -> bool:
    members = _members(ann)
    if not members:
        return False
    for member in members:
        if member is str:
            continue
        if typing.get_origin(member) is typing.Literal and all(isinstance(a, str) for a in typing.get_args(member)):
            continue
        if isinstance(member, type) and issubclass(member, Enum) and issubclass(member, str):
            continue
        return False
    return True
