"""Structured error classification: every failure becomes a `BuildError` with a type from `ErrorType`.

Classification is data (ordered tables of rules), so adding a case is one line and every
type has a unit test. The goal is that a failed run can be diagnosed from its files
alone: each error names the files to open first. No I/O and no clock here, so the
workflow may call these functions too.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from agentgate.models import BuildError, ErrorType

TAIL_CHARS = 2000


class ResourceExceededError(Exception):
    """A sandbox limit (memory, CPU, PIDs, disk) stopped the agent; the message names the limit."""


class BudgetExceededError(Exception):
    """Raised when a run's token or cost budget is spent."""


class WorkspaceError(Exception):
    """Raised when a workspace cannot be prepared (clone, checkout, disk)."""


class SnapshotError(Exception):
    """Raised when an iteration's work cannot be committed or diffed."""


class DeliveryError(Exception):
    """Raised when the result cannot be delivered (push, PR, CI)."""


def _tail(text: str | bytes | None, limit: int = TAIL_CHARS) -> str | None:
    if text is None:
        return None
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not text:
        return None
    return text if len(text) <= limit else "…[truncated]…\n" + text[-limit:]


# -- exceptions ---------------------------------------------------------------------------------------

# Phase → the type an otherwise unexplained exception gets there.
PHASE_DEFAULTS: dict[str, ErrorType] = {
    "prepare": ErrorType.WORKSPACE_ERROR,
    "workspace": ErrorType.WORKSPACE_ERROR,
    "build": ErrorType.AGENT_CRASH,
    "agent": ErrorType.AGENT_CRASH,
    "snapshot": ErrorType.SNAPSHOT_ERROR,
    "deliver": ErrorType.DELIVERY_ERROR,
    "delivery": ErrorType.DELIVERY_ERROR,
    "ci": ErrorType.CI_FAILED,
}


def _exc_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _is_cancel(exc: BaseException, _phase: str | None) -> bool:
    return isinstance(exc, asyncio.CancelledError) or bool(_exc_names(exc) & {"CancelledError", "CanceledError"})


def _is_timeout(exc: BaseException, phase: str | None) -> bool:
    return isinstance(exc, TimeoutError) or "TimeoutError" in _exc_names(exc)


def _name_is(*names: str) -> Callable[[BaseException, str | None], bool]:
    return lambda exc, _phase: bool(_exc_names(exc) & set(names))


def _os_error_in(*phases: str) -> Callable[[BaseException, str | None], bool]:
    return lambda exc, phase: isinstance(exc, OSError) and phase in phases


def _timeout_type(phase: str | None) -> ErrorType:
    return ErrorType.AGENT_TIMEOUT if phase in ("build", "agent") else ErrorType.SYSTEM_ERROR


def _is_lost_worker(exc: BaseException, _phase: str | None) -> bool:
    """A heartbeat timeout means the worker stopped answering (died, partitioned), not that the agent was slow."""
    return "TimeoutError" in _exc_names(exc) and getattr(getattr(exc, "type", None), "name", None) == "HEARTBEAT"


@dataclass(frozen=True)
class _Rule:
    matches: Callable[[BaseException, str | None], bool]
    kind: ErrorType | Callable[[str | None], ErrorType]

    def type_for(self, phase: str | None) -> ErrorType:
        return self.kind if isinstance(self.kind, ErrorType) else self.kind(phase)


# First match wins. ApplicationError types and wrapped causes are resolved before this table.
EXCEPTION_RULES: list[_Rule] = [
    _Rule(_is_cancel, ErrorType.CANCELED),
    _Rule(_name_is("BudgetExceededError"), ErrorType.BUDGET_EXCEEDED),
    _Rule(_name_is("ResourceExceededError"), ErrorType.RESOURCE_EXCEEDED),
    _Rule(_name_is("WorkspaceError"), ErrorType.WORKSPACE_ERROR),
    _Rule(_name_is("SnapshotError"), ErrorType.SNAPSHOT_ERROR),
    _Rule(_name_is("DeliveryError"), ErrorType.DELIVERY_ERROR),
    _Rule(_is_lost_worker, ErrorType.SYSTEM_ERROR),
    _Rule(_is_timeout, _timeout_type),
    _Rule(_name_is("GitError"), lambda phase: PHASE_DEFAULTS.get(phase or "", ErrorType.WORKSPACE_ERROR)),
    _Rule(_os_error_in("prepare", "workspace"), ErrorType.WORKSPACE_ERROR),
    _Rule(_os_error_in("snapshot"), ErrorType.SNAPSHOT_ERROR),
    _Rule(_os_error_in("deliver", "delivery"), ErrorType.DELIVERY_ERROR),
]


def _unwrap(exc: BaseException) -> BaseException:
    """Temporal wraps an activity's failure (ActivityError → ApplicationError/TimeoutError/CancelledError)."""
    seen = 0
    while seen < 10 and _exc_names(exc) & {"ActivityError", "ChildWorkflowError"}:
        cause = getattr(exc, "cause", None) or exc.__cause__
        if cause is None:
            break
        exc, seen = cause, seen + 1
    return exc


def classify_exception(
    exc: BaseException, phase: str | None = None, iteration: int | None = None, files: Iterable[str] = ()
) -> BuildError:
    """Any exception (raw, or as Temporal delivers it to the workflow) → a `BuildError`."""
    inner = _unwrap(exc)
    kind: ErrorType | None = None
    message = str(inner) or type(inner).__name__
    details: Any = None
    app_type = getattr(inner, "type", None) if "ApplicationError" in _exc_names(inner) else None
    if app_type:
        try:
            kind = ErrorType(app_type)
        except ValueError:
            kind = None
        message = getattr(inner, "message", None) or message
        details = getattr(inner, "details", None)
    if kind is None:
        for rule in EXCEPTION_RULES:
            if rule.matches(inner, phase):
                kind = rule.type_for(phase)
                break
    if kind is None and "ApplicationError" in _exc_names(inner) and getattr(inner, "cause", None) is not None:
        return classify_exception(inner.cause, phase, iteration, files)  # type: ignore[attr-defined]
    if kind is None:
        kind = PHASE_DEFAULTS.get(phase or "", ErrorType.SYSTEM_ERROR)
    # Process-like exceptions (GitError, CalledProcessError) carry the exit code and stderr worth keeping.
    exit_code = next(
        (v for v in (getattr(inner, a, None) for a in ("exit_code", "code", "returncode")) if isinstance(v, int)),
        None,
    )
    if isinstance(details, (list, tuple)) and details and isinstance(details[0], dict):
        exit_code = details[0].get("exit_code", exit_code)
    return BuildError(
        type=kind,
        message=message,
        phase=phase,
        iteration=iteration,
        exit_code=exit_code,
        stdout_tail=_tail(
            getattr(inner, "stdout", None) if isinstance(getattr(inner, "stdout", None), (str, bytes)) else None
        ),
        stderr_tail=_tail(
            getattr(inner, "stderr", None) if isinstance(getattr(inner, "stderr", None), (str, bytes)) else None
        ),
        files=list(files),
    )


# -- agent results ------------------------------------------------------------------------------------

# Patterns searched in the agent's error message, stderr tail and stdout tail.
AUTH_PATTERNS = re.compile(
    r"(401\b|403\b|unauthori[sz]ed|invalid (x-)?api[ _-]?key|authentication[_ ](error|failed)|not logged in|"
    r"please (run )?/?login|oauth token (has )?expired|permission denied \(publickey\)|missing api key)",
    re.IGNORECASE,
)
BUDGET_PATTERNS = re.compile(
    r"(credit balance is too low|budget (exceeded|exhausted)|max(imum)?[ _-]budget|quota exceeded|"
    r"insufficient[_ ]quota|usage limit reached|error_max_budget)",
    re.IGNORECASE,
)


def error_from_agent(result: Any, files: Iterable[str] | None = None) -> BuildError | None:
    """An `AgentResult` → its `BuildError`, or None when the agent succeeded.

    Order matters: a stop we caused (cancel, timeout, stall) explains a non-zero exit
    code better than the code itself; an auth or budget message explains it better than
    "crashed"; a zero exit with a reported error is the agent giving up on the task.
    """
    stdout = getattr(result, "stdout_excerpt", "") or ""
    stderr = getattr(result, "stderr_excerpt", "") or ""
    previous = getattr(result, "error", None)
    reported = getattr(previous, "message", None) or getattr(result, "final_message", None) or ""
    exit_code = getattr(result, "exit_code", None)
    n = getattr(result, "iteration", None)
    evidence = "\n".join((reported, stderr[-TAIL_CHARS * 2 :], stdout[-TAIL_CHARS * 2 :]))

    kind: ErrorType | None
    if getattr(result, "canceled", False):
        kind, message = ErrorType.CANCELED, "the agent was stopped by a cancel request"
    elif getattr(result, "timed_out", False):
        kind, message = ErrorType.AGENT_TIMEOUT, "the agent exceeded its iteration timeout"
    elif getattr(result, "stalled", False):
        kind, message = ErrorType.AGENT_STALLED, "the agent produced no output for its idle timeout"
    elif getattr(result, "success", False) and previous is None:
        return None
    elif AUTH_PATTERNS.search(evidence):
        kind, message = ErrorType.AGENT_AUTH, "the agent could not authenticate with its provider"
    elif BUDGET_PATTERNS.search(evidence):
        kind, message = ErrorType.BUDGET_EXCEEDED, "the agent's budget or quota is spent"
    elif exit_code not in (0, None):
        kind, message = ErrorType.AGENT_CRASH, f"the agent exited with code {exit_code}"
    elif previous is not None and previous.type != ErrorType.AGENT_CRASH:
        kind, message = previous.type, previous.message
    else:
        kind, message = ErrorType.AGENT_TASK_FAILURE, "the agent reported that it could not complete the task"
    if previous is not None and previous.message and previous.message not in message:
        message = f"{message}: {previous.message}"
    stdout_ref = getattr(result, "stdout_ref", None)
    stderr_ref = getattr(result, "stderr_ref", None)
    default_files = [f"agent-{n}.json" if n is not None else None, stderr_ref, stdout_ref]
    return BuildError(
        type=kind,
        message=message,
        phase="build",
        iteration=n,
        exit_code=exit_code,
        stdout_tail=_tail(stdout),
        stderr_tail=_tail(stderr),
        files=list(files) if files is not None else [f for f in default_files if f],
    )


# -- verification reports -------------------------------------------------------------------------------

# A failed check's kind (GateOutcome.kind) → type; then its level; then words in its name/command.
KIND_TYPES: dict[str, ErrorType] = {
    "typecheck": ErrorType.TYPECHECK_FAILED,
    "types": ErrorType.TYPECHECK_FAILED,
    "lint": ErrorType.LINT_FAILED,
    "format": ErrorType.LINT_FAILED,
    "test": ErrorType.TEST_FAILED,
    "tests": ErrorType.TEST_FAILED,
    "blackbox": ErrorType.BLACKBOX_FAILED,
    "contract": ErrorType.CONTRACT_FAILED,
    "integrity": ErrorType.CONTRACT_FAILED,
    "secret": ErrorType.CONTRACT_FAILED,
    "security": ErrorType.CONTRACT_FAILED,
    "ci": ErrorType.CI_FAILED,
}
LEVEL_TYPES: dict[str, ErrorType] = {
    "integrity": ErrorType.CONTRACT_FAILED,
    "L0": ErrorType.CONTRACT_FAILED,
    "L1": ErrorType.TEST_FAILED,
    "L2": ErrorType.BLACKBOX_FAILED,
    "L3": ErrorType.CI_FAILED,
    "ci": ErrorType.CI_FAILED,
}
WORD_TYPES: list[tuple[re.Pattern[str], ErrorType]] = [
    (re.compile(r"\b(mypy|pyright|tsc|typecheck|type-check|pytype)\b", re.I), ErrorType.TYPECHECK_FAILED),
    (
        re.compile(r"\b(ruff|flake8|eslint|pylint|lint|black --check|prettier|golangci-lint|clippy)\b", re.I),
        ErrorType.LINT_FAILED,
    ),
    (re.compile(r"\b(blackbox|black-box|e2e|smoke)\b", re.I), ErrorType.BLACKBOX_FAILED),
    (re.compile(r"\b(contract|schema|openapi)\b", re.I), ErrorType.CONTRACT_FAILED),
    (re.compile(r"\b(github actions|ci)\b", re.I), ErrorType.CI_FAILED),
]


def _field(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def classify_gate(gate: Any) -> ErrorType:
    kind = (_field(gate, "kind") or "").lower()
    if kind in KIND_TYPES:
        return KIND_TYPES[kind]
    level = _field(gate, "level")
    if level in LEVEL_TYPES:
        return LEVEL_TYPES[level]
    text = f"{_field(gate, 'name') or ''} {_field(gate, 'command') or ''}"
    for pattern, error_type in WORD_TYPES:
        if pattern.search(text):
            return error_type
    return ErrorType.TEST_FAILED


def error_from_verification(report: Any, iteration: int | None = None) -> BuildError | None:
    """A `VerificationSummary` (or the `verification-<N>.json` dict) → its `BuildError`, None when it passed.

    The type is the first failed check's; integrity violations (a diff that weakened the
    gates) are a contract failure whatever else failed.
    """
    if _field(report, "passed", False):
        return None
    n = iteration if iteration is not None else _field(report, "iteration")
    gates = list(_field(report, "gates", []) or [])
    failed = [g for g in gates if not _field(g, "passed", False)]
    violations = list(_field(report, "integrity_violations", []) or [])
    report_ref = _field(report, "report_ref") or (f"verification-{n}.json" if n is not None else None)
    refs = [report_ref] + [_field(g, "output_ref") or _field(g, "output_file") for g in failed]
    first = failed[0] if failed else None
    if violations:
        kind = ErrorType.CONTRACT_FAILED
        message = "the change weakened the gates: " + "; ".join(map(str, violations))
    elif first is not None:
        kind = classify_gate(first)
        names = ", ".join(str(_field(g, "name") or _field(g, "command")) for g in failed)
        message = f"gates failed: {names}"
        if _field(first, "timed_out"):
            message += " (timed out)"
    else:
        kind, message = ErrorType.TEST_FAILED, "verification failed"
    return BuildError(
        type=kind,
        message=message,
        phase="verify",
        iteration=n,
        exit_code=_field(first, "exit_code") if first is not None else None,
        stdout_tail=_tail(_field(first, "excerpt") or _field(first, "output")) if first is not None else None,
        files=[r for r in refs if r],
    )


def error_from_budget(spent: float, limit: float, unit: str = "USD", iteration: int | None = None) -> BuildError:
    return BuildError(
        type=ErrorType.BUDGET_EXCEEDED,
        message=f"the run spent {spent:g} {unit} of its {limit:g} {unit} budget",
        iteration=iteration,
        files=["run.json"],
    )
