"""The run state machine: the table is complete, consistent, and has no dead ends."""

from __future__ import annotations

import itertools
from collections import deque

import pytest

from agentgate.state_machine import (
    TERMINAL_STATES,
    TRANSITIONS,
    IllegalTransitionError,
    RunEvent,
    RunResult,
    RunState,
    RunStateMachine,
    next_transition,
)

S, E, R = RunState, RunEvent, RunResult

# The expected table, written out independently of the implementation's construction.
EXPECTED = {
    (S.QUEUED, E.WORKSPACE_ACQUIRED): (S.LEASED, None),
    (S.LEASED, E.BUILD_STARTED): (S.BUILDING, None),
    (S.BUILDING, E.BUILD_COMPLETED): (S.SNAPSHOTTING, None),
    (S.BUILDING, E.BUILD_FAILED): (S.FAILED, R.FAILED_BUILD),
    (S.SNAPSHOTTING, E.SNAPSHOT_COMPLETED): (S.VERIFYING, None),
    (S.SNAPSHOTTING, E.SNAPSHOT_FAILED): (S.FAILED, R.FAILED_ERROR),
    (S.SNAPSHOTTING, E.WORKSPACE_MOVED): (S.BUILDING, None),
    (S.VERIFYING, E.VERIFY_PASSED): (S.SUCCEEDED, R.PASSED),
    (S.VERIFYING, E.VERIFY_FAILED_RETRYABLE): (S.FEEDBACK, None),
    (S.VERIFYING, E.VERIFY_FAILED_TERMINAL): (S.FAILED, R.FAILED_VERIFICATION),
    (S.VERIFYING, E.PR_CREATED): (S.PR_CREATED, None),
    (S.VERIFYING, E.CONTINUE_REQUESTED): (S.FEEDBACK, None),
    (S.FEEDBACK, E.FEEDBACK_GENERATED): (S.BUILDING, None),
    (S.FEEDBACK, E.VERIFY_FAILED_TERMINAL): (S.FAILED, R.FAILED_VERIFICATION),
    (S.PR_CREATED, E.VERIFY_PASSED): (S.SUCCEEDED, R.PASSED),
    (S.PR_CREATED, E.CI_POLLING_STARTED): (S.CI_POLLING, None),
    (S.CI_POLLING, E.CI_PASSED): (S.SUCCEEDED, R.PASSED),
    (S.CI_POLLING, E.CI_FAILED): (S.FEEDBACK, None),
    (S.CI_POLLING, E.CI_TIMEOUT): (S.FAILED, R.FAILED_TIMEOUT),
    (S.CI_POLLING, E.CI_INCONCLUSIVE): (S.SUCCEEDED, R.PASSED),
}
for _state in RunState:
    if _state not in TERMINAL_STATES:
        EXPECTED[(_state, E.USER_CANCELED)] = (S.CANCELED, R.CANCELED)
        EXPECTED[(_state, E.SYSTEM_ERROR)] = (S.FAILED, R.FAILED_ERROR)
        EXPECTED[(_state, E.TIMEOUT)] = (S.FAILED, R.FAILED_TIMEOUT)


@pytest.mark.parametrize(("state", "event"), list(itertools.product(RunState, RunEvent)))
def test_every_state_event_pair_matches_the_table(state, event):
    if (state, event) in EXPECTED:
        to, result = EXPECTED[(state, event)]
        transition = next_transition(state, event)
        assert (transition.to, transition.result) == (to, result)
    else:
        with pytest.raises(IllegalTransitionError) as info:
            next_transition(state, event)
        assert info.value.state == state and info.value.event == event
        assert state.value in str(info.value) and event.value in str(info.value)


def test_table_has_nothing_unexpected():
    assert set(TRANSITIONS) == set(EXPECTED)


def test_terminal_states_accept_no_event():
    for state in TERMINAL_STATES:
        assert not any(s == state for s, _ in TRANSITIONS)


def _walk(*events: RunEvent) -> RunStateMachine:
    sm = RunStateMachine()
    for event in events:
        sm.apply(event)
    return sm


def test_multi_iteration_path_goes_from_feedback_back_to_building():
    sm = _walk(E.WORKSPACE_ACQUIRED, E.BUILD_STARTED, E.BUILD_COMPLETED, E.SNAPSHOT_COMPLETED,
               E.VERIFY_FAILED_RETRYABLE, E.FEEDBACK_GENERATED)  # fmt: skip
    assert sm.state == S.BUILDING and sm.result is None
    sm.apply(E.BUILD_COMPLETED)
    sm.apply(E.SNAPSHOT_COMPLETED)
    sm.apply(E.VERIFY_PASSED)
    assert (sm.state, sm.result) == (S.SUCCEEDED, R.PASSED)
    assert [t[1] for t in sm.trail][-3:] == [E.BUILD_COMPLETED, E.SNAPSHOT_COMPLETED, E.VERIFY_PASSED]


def test_pr_created_without_ci_succeeds():
    sm = _walk(E.WORKSPACE_ACQUIRED, E.BUILD_STARTED, E.BUILD_COMPLETED, E.SNAPSHOT_COMPLETED, E.PR_CREATED,
               E.VERIFY_PASSED)  # fmt: skip
    assert (sm.state, sm.result) == (S.SUCCEEDED, R.PASSED)


def test_ci_failed_with_retries_exhausted_is_failed_verification_not_system_error():
    sm = _walk(E.WORKSPACE_ACQUIRED, E.BUILD_STARTED, E.BUILD_COMPLETED, E.SNAPSHOT_COMPLETED, E.PR_CREATED,
               E.CI_POLLING_STARTED, E.CI_FAILED, E.VERIFY_FAILED_TERMINAL)  # fmt: skip
    assert (sm.state, sm.result) == (S.FAILED, R.FAILED_VERIFICATION)


def test_illegal_transition_leaves_state_unchanged():
    sm = _walk(E.WORKSPACE_ACQUIRED)
    with pytest.raises(IllegalTransitionError):
        sm.apply(E.VERIFY_PASSED)
    assert sm.state == S.LEASED


def _reachable_from(start: RunState) -> set[RunState]:
    seen, queue = {start}, deque([start])
    while queue:
        state = queue.popleft()
        for (src, _), transition in TRANSITIONS.items():
            if src == state and transition.to not in seen:
                seen.add(transition.to)
                queue.append(transition.to)
    return seen


def test_every_state_is_reachable_from_queued():
    assert _reachable_from(S.QUEUED) == set(RunState)


def test_every_non_terminal_state_can_reach_a_terminal_one():
    for state in RunState:
        if state not in TERMINAL_STATES:
            assert _reachable_from(state) & TERMINAL_STATES, state
