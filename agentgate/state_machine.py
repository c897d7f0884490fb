"""The run state machine: one transition table, the single source of truth.

The workflow drives every state change through `apply`, so a path the table does not
allow is a typed error instead of a silently wrong run record (the original's Bug #65:
a verified run with a PR and no CI was marked failed because a transition was missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RunState(StrEnum):
    QUEUED = "queued"
    LEASED = "leased"
    BUILDING = "building"
    SNAPSHOTTING = "snapshotting"
    VERIFYING = "verifying"
    FEEDBACK = "feedback"
    PR_CREATED = "pr_created"
    CI_POLLING = "ci_polling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class RunEvent(StrEnum):
    WORKSPACE_ACQUIRED = "workspace_acquired"
    BUILD_STARTED = "build_started"
    BUILD_COMPLETED = "build_completed"
    BUILD_FAILED = "build_failed"
    SNAPSHOT_COMPLETED = "snapshot_completed"
    SNAPSHOT_FAILED = "snapshot_failed"
    VERIFY_PASSED = "verify_passed"
    VERIFY_FAILED_RETRYABLE = "verify_failed_retryable"
    VERIFY_FAILED_TERMINAL = "verify_failed_terminal"
    FEEDBACK_GENERATED = "feedback_generated"
    CONTINUE_REQUESTED = "continue_requested"
    PR_CREATED = "pr_created"
    CI_POLLING_STARTED = "ci_polling_started"
    CI_PASSED = "ci_passed"
    CI_FAILED = "ci_failed"
    CI_TIMEOUT = "ci_timeout"
    CI_INCONCLUSIVE = "ci_inconclusive"
    USER_CANCELED = "user_canceled"
    SYSTEM_ERROR = "system_error"
    TIMEOUT = "timeout"
    WORKSPACE_MOVED = "workspace_moved"


class RunResult(StrEnum):
    PASSED = "passed"
    FAILED_VERIFICATION = "failed_verification"
    FAILED_BUILD = "failed_build"
    FAILED_TIMEOUT = "failed_timeout"
    FAILED_ERROR = "failed_error"
    CANCELED = "canceled"


TERMINAL_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELED})


@dataclass(frozen=True)
class Transition:
    to: RunState
    result: RunResult | None = None


class IllegalTransitionError(Exception):
    """Raised for a (state, event) pair that the table does not allow."""

    def __init__(self, state: RunState, event: RunEvent) -> None:
        super().__init__(f"illegal run transition: event {event.value!r} in state {state.value!r}")
        self.state = state
        self.event = event


S, E, R = RunState, RunEvent, RunResult

_PROGRESS: dict[tuple[RunState, RunEvent], Transition] = {
    (S.QUEUED, E.WORKSPACE_ACQUIRED): Transition(S.LEASED),
    (S.LEASED, E.BUILD_STARTED): Transition(S.BUILDING),
    (S.BUILDING, E.BUILD_COMPLETED): Transition(S.SNAPSHOTTING),
    (S.BUILDING, E.BUILD_FAILED): Transition(S.FAILED, R.FAILED_BUILD),
    (S.SNAPSHOTTING, E.SNAPSHOT_COMPLETED): Transition(S.VERIFYING),
    (S.SNAPSHOTTING, E.SNAPSHOT_FAILED): Transition(S.FAILED, R.FAILED_ERROR),
    # The worker holding the workspace was lost before the snapshot: the iteration's work was only
    # on its disk, so the workspace is restored elsewhere from the last checkpoint and built again.
    (S.SNAPSHOTTING, E.WORKSPACE_MOVED): Transition(S.BUILDING),
    (S.VERIFYING, E.VERIFY_PASSED): Transition(S.SUCCEEDED, R.PASSED),
    (S.VERIFYING, E.VERIFY_FAILED_RETRYABLE): Transition(S.FEEDBACK),
    (S.VERIFYING, E.VERIFY_FAILED_TERMINAL): Transition(S.FAILED, R.FAILED_VERIFICATION),
    (S.VERIFYING, E.PR_CREATED): Transition(S.PR_CREATED),
    # The convergence strategy wants another iteration although the gates passed
    # (ralph without the completion phrase, manual without an operator stop).
    (S.VERIFYING, E.CONTINUE_REQUESTED): Transition(S.FEEDBACK),
    (S.FEEDBACK, E.FEEDBACK_GENERATED): Transition(S.BUILDING),
    # Retries exhausted while preparing feedback (e.g. after a CI failure): the run
    # failed verification, it did not crash. Missing in the original (Bug #65).
    (S.FEEDBACK, E.VERIFY_FAILED_TERMINAL): Transition(S.FAILED, R.FAILED_VERIFICATION),
    # A PR exists and there is no CI to wait for: the verified run succeeded (Bug #65).
    (S.PR_CREATED, E.VERIFY_PASSED): Transition(S.SUCCEEDED, R.PASSED),
    (S.PR_CREATED, E.CI_POLLING_STARTED): Transition(S.CI_POLLING),
    (S.CI_POLLING, E.CI_PASSED): Transition(S.SUCCEEDED, R.PASSED),
    (S.CI_POLLING, E.CI_FAILED): Transition(S.FEEDBACK),
    (S.CI_POLLING, E.CI_TIMEOUT): Transition(S.FAILED, R.FAILED_TIMEOUT),
    # CI awaits an approval, or its status cannot be read in best-effort mode: the gates
    # passed, so the run succeeds and the reason is recorded as a warning (neither a
    # failure nor a hang).
    (S.CI_POLLING, E.CI_INCONCLUSIVE): Transition(S.SUCCEEDED, R.PASSED),
}

# Events that end a run from any state that is not yet terminal.
_ANYWHERE: dict[RunEvent, Transition] = {
    E.USER_CANCELED: Transition(S.CANCELED, R.CANCELED),
    E.SYSTEM_ERROR: Transition(S.FAILED, R.FAILED_ERROR),
    E.TIMEOUT: Transition(S.FAILED, R.FAILED_TIMEOUT),
}


def _build_table() -> dict[tuple[RunState, RunEvent], Transition]:
    table = dict(_PROGRESS)
    for state in RunState:
        if state in TERMINAL_STATES:
            continue
        for event, transition in _ANYWHERE.items():
            table.setdefault((state, event), transition)
    return table


TRANSITIONS: dict[tuple[RunState, RunEvent], Transition] = _build_table()


def next_transition(state: RunState, event: RunEvent) -> Transition:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransitionError(state, event) from None


def is_terminal(state: RunState) -> bool:
    return state in TERMINAL_STATES


class RunStateMachine:
    """Holds the current state and the result once a terminal state is reached."""

    def __init__(self, state: RunState = RunState.QUEUED) -> None:
        self.state = state
        self.result: RunResult | None = None
        self.trail: list[tuple[RunState, RunEvent, RunState]] = []

    def apply(self, event: RunEvent) -> RunState:
        transition = next_transition(self.state, event)
        self.trail.append((self.state, event, transition.to))
        self.state = transition.to
        if transition.result is not None:
            self.result = transition.result
        return self.state

    def can(self, event: RunEvent) -> bool:
        return (self.state, event) in TRANSITIONS

    @property
    def terminal(self) -> bool:
        return is_terminal(self.state)
