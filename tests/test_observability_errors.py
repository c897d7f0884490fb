"""Error classification: one case per ErrorType, from an exception, an agent result or a verification report."""

from __future__ import annotations

import asyncio
import builtins

import pytest
from temporalio.exceptions import ActivityError, ApplicationError, RetryState, TimeoutError, TimeoutType

from agentgate.agents.base import AgentResult
from agentgate.git import GitError
from agentgate.models import BuildError, ErrorType, GateOutcome, VerificationSummary
from agentgate.observability.errors import (
    BudgetExceededError,
    classify_exception,
    error_from_agent,
    error_from_budget,
    error_from_verification,
)


def agent(**kw) -> AgentResult:
    base = dict(
        driver="claude-code",
        iteration=2,
        success=False,
        exit_code=1,
        duration_ms=10,
        stdout_ref="agent-2.stdout.log",
        stderr_ref="agent-2.stderr.log",
        stdout_excerpt="working...\n",
        stderr_excerpt="",
    )
    base.update(kw)
    return AgentResult(**base)


def gate(name: str, *, command: str = "true", passed: bool = False, **kw) -> GateOutcome:
    return GateOutcome(
        name=name,
        command=command,
        passed=passed,
        exit_code=0 if passed else 1,
        duration_ms=5,
        output_ref=f"gate-1-{name}.log",
        excerpt=f"{name} output",
        **kw,
    )


def report(*gates: GateOutcome, **kw) -> VerificationSummary:
    return VerificationSummary(
        passed=all(g.passed for g in gates), gates=list(gates), report_ref="verification-1.json", **kw
    )


def activity_error(cause: BaseException) -> ActivityError:
    err = ActivityError(
        "activity failed",
        scheduled_event_id=1,
        started_event_id=2,
        identity="w",
        activity_type="run_agent",
        activity_id="1",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    err.__cause__ = cause
    return err


# -- one test per ErrorType ----------------------------------------------------------------------------


def test_agent_crash():
    err = error_from_agent(agent(exit_code=7, stderr_excerpt="Traceback: boom"))
    assert err.type == ErrorType.AGENT_CRASH and err.exit_code == 7 and "boom" in err.stderr_tail
    assert err.files == ["agent-2.json", "agent-2.stderr.log", "agent-2.stdout.log"]
    assert err.iteration == 2 and err.phase == "build"


def test_agent_timeout():
    assert error_from_agent(agent(timed_out=True, exit_code=-15)).type == ErrorType.AGENT_TIMEOUT
    assert classify_exception(builtins.TimeoutError(), "build").type == ErrorType.AGENT_TIMEOUT


def test_agent_stalled():
    assert error_from_agent(agent(stalled=True, exit_code=-9)).type == ErrorType.AGENT_STALLED


def test_agent_task_failure():
    reported = BuildError(type=ErrorType.AGENT_CRASH, message="the model gave up: tests too hard")
    err = error_from_agent(agent(exit_code=0, error=reported))
    assert err.type == ErrorType.AGENT_TASK_FAILURE and "gave up" in err.message


def test_agent_auth():
    err = error_from_agent(agent(exit_code=1, stderr_excerpt="Error: Invalid API key · Please run /login"))
    assert err.type == ErrorType.AGENT_AUTH
    assert classify_exception(ApplicationError("no key", type="agent_auth"), "build").type == ErrorType.AGENT_AUTH


def test_typecheck_failed():
    assert error_from_verification(report(gate("types", command="mypy src"))).type == ErrorType.TYPECHECK_FAILED
    assert error_from_verification(report(gate("check", kind="typecheck"))).type == ErrorType.TYPECHECK_FAILED


def test_lint_failed():
    err = error_from_verification(report(gate("ruff", passed=True), gate("lint", command="ruff check .")))
    assert err.type == ErrorType.LINT_FAILED
    assert err.files == ["verification-1.json", "gate-1-lint.log"]


def test_test_failed():
    err = error_from_verification(report(gate("unit", command="pytest -q")), iteration=1)
    assert err.type == ErrorType.TEST_FAILED and err.exit_code == 1 and err.stdout_tail == "unit output"
    assert err.message == "gates failed: unit" and err.iteration == 1 and err.phase == "verify"


def test_blackbox_failed():
    assert error_from_verification(report(gate("api", level="L2"))).type == ErrorType.BLACKBOX_FAILED


def test_contract_failed():
    assert error_from_verification(report(gate("openapi", level="L0"))).type == ErrorType.CONTRACT_FAILED
    weakened = report(gate("unit", passed=True), integrity_violations=["test file deleted: tests/test_x.py"])
    weakened.passed = False
    err = error_from_verification(weakened)
    assert err.type == ErrorType.CONTRACT_FAILED and "test file deleted" in err.message


def test_ci_failed():
    assert error_from_verification(report(gate("workflow", kind="ci"))).type == ErrorType.CI_FAILED
    as_dict = {
        "iteration": 3,
        "passed": False,
        "gates": [{"name": "build", "passed": False, "level": "L3", "exit_code": 1, "output_file": "gate-3-1.log"}],
    }
    err = error_from_verification(as_dict)
    assert err.type == ErrorType.CI_FAILED and err.files == ["verification-3.json", "gate-3-1.log"]


def test_workspace_error():
    err = classify_exception(GitError(["clone", "x"], 128, "fatal: repository not found"), "prepare")
    assert err.type == ErrorType.WORKSPACE_ERROR and err.exit_code == 128 and "not found" in err.stderr_tail
    assert classify_exception(FileNotFoundError("/nope"), "prepare").type == ErrorType.WORKSPACE_ERROR


def test_snapshot_error():
    wrapped = activity_error(ApplicationError("git commit failed", type="snapshot_error"))
    err = classify_exception(wrapped, "snapshot", iteration=2)
    assert err.type == ErrorType.SNAPSHOT_ERROR and err.message == "git commit failed" and err.iteration == 2
    assert (
        classify_exception(GitError(["commit"], 128, "index.lock exists"), "snapshot").type == ErrorType.SNAPSHOT_ERROR
    )


def test_delivery_error():
    assert classify_exception(GitError(["push"], 1, "rejected"), "deliver").type == ErrorType.DELIVERY_ERROR


def test_budget_exceeded():
    assert classify_exception(BudgetExceededError("over $5"), "build").type == ErrorType.BUDGET_EXCEEDED
    assert error_from_agent(agent(stderr_excerpt="Credit balance is too low")).type == ErrorType.BUDGET_EXCEEDED
    assert error_from_budget(5.2, 5.0).type == ErrorType.BUDGET_EXCEEDED


def test_canceled():
    assert classify_exception(asyncio.CancelledError(), "build").type == ErrorType.CANCELED
    assert error_from_agent(agent(canceled=True, exit_code=-15)).type == ErrorType.CANCELED


def test_queue_timeout():
    # The workflow ends a run that waited too long for a queue slot with this type; classification keeps it.
    waited = ApplicationError("no slot within 600 s", type="queue_timeout")
    assert classify_exception(waited, "queue").type == ErrorType.QUEUE_TIMEOUT


def test_system_error():
    assert classify_exception(RuntimeError("bug"), "verify").type == ErrorType.SYSTEM_ERROR
    lost = activity_error(TimeoutError("heartbeat", type=TimeoutType.HEARTBEAT, last_heartbeat_details=[]))
    assert classify_exception(lost, "build").type == ErrorType.SYSTEM_ERROR


# -- coverage of the table itself ---------------------------------------------------------------------------


def test_resource_exceeded():
    from agentgate.observability.errors import ResourceExceededError

    error = classify_exception(ResourceExceededError("pids limit 64"), "build")
    assert error.type == ErrorType.RESOURCE_EXCEEDED and "pids limit 64" in error.message


def test_every_error_type_has_a_test_here():
    import sys

    names = {n.removeprefix("test_") for n in dir(sys.modules[__name__]) if n.startswith("test_")}
    assert {t.value for t in ErrorType} <= names


def test_success_is_not_an_error():
    assert error_from_agent(agent(success=True, exit_code=0)) is None
    assert error_from_verification(report(gate("unit", passed=True))) is None


@pytest.mark.parametrize(
    "phase,expected", [("build", "agent_crash"), ("snapshot", "snapshot_error"), (None, "system_error")]
)
def test_unknown_application_error_types_fall_back_to_the_phase(phase, expected):
    assert classify_exception(ApplicationError("x", type="unknown_driver"), phase).type == expected
