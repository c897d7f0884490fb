"""Convergence strategies: after each iteration, continue or stop, and why.

Imported by workflow code, so everything here is a pure function of its inputs: no
I/O, no clock, no randomness, no iteration over unordered sets. The workflow records
every `Decision.reason`. Limits (max iterations, wall clock, budget, an operator stop)
are checked before any strategy and always win. A strategy that raises is wrapped in
`StrategyError`, which the caller must turn into a classified failure of the run
rather than a silent "continue".
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

StrategyName = Literal["fixed", "hybrid", "ralph", "adaptive", "manual"]
SIMILARITY_TOKENS = 300  # bounded: difflib is quadratic on repetitive input, and this runs in workflow code


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConvergenceConfig(_Strict):
    """Proposed as `WorkOrderRequest.convergence` (defaults reproduce today's fixed loop)."""

    strategy: StrategyName = "fixed"
    # hybrid
    base_iterations: int = Field(default=3, ge=1, le=200)
    bonus_iterations: int = Field(default=2, ge=0, le=200)
    progress_threshold: float = Field(default=0.05, ge=0, le=1, description="Minimum rise of progress for a bonus.")
    unchanged_limit: int = Field(default=2, ge=1, le=50, description="K: stop after K iterations without a change.")
    # ralph
    completion_phrases: list[str] = Field(
        default_factory=lambda: ["TASK COMPLETE", "<promise>COMPLETE</promise>"], min_length=1
    )
    similarity_threshold: float = Field(default=0.92, gt=0, le=1)
    similarity_window: int = Field(default=3, ge=2, le=20)
    # adaptive
    stall_window: int = Field(default=2, ge=1, le=50)
    min_improvement: float = Field(default=0.01, ge=0, le=1)
    min_iterations: int = Field(default=1, ge=1, le=200)


class IterationObservation(_Strict):
    iteration: int = Field(ge=1)
    progress: float = Field(default=0.0, ge=0, le=1, description="Fraction of planned checks passing.")
    changed: bool = True
    passed: bool = False
    final_message: str | None = None


class ConvergenceState(_Strict):
    iteration: int = Field(ge=1, description="The iteration that just finished.")
    max_iterations: int = Field(ge=1)
    history: list[IterationObservation] = Field(default_factory=list, description="Oldest first; last = this one.")
    stop_requested: bool = False
    wall_clock_exceeded: bool = False
    budget_exceeded: bool = False

    @model_validator(mode="after")
    def _history_matches(self) -> ConvergenceState:
        if self.history and self.history[-1].iteration != self.iteration:
            raise ValueError("the last history entry must be the iteration that just finished")
        return self

    @property
    def last(self) -> IterationObservation | None:
        return self.history[-1] if self.history else None


class Decision(_Strict):
    action: Literal["continue", "stop"]
    reason: str
    code: str = Field(description="Stable machine-readable cause, e.g. passed, limit.max_iterations, stalled.")
    passed: bool = Field(default=False, description="True when stopping because the work is accepted.")

    @property
    def stop(self) -> bool:
        return self.action == "stop"


class StrategyError(Exception):
    """A strategy failed to decide; the run must fail with this, not continue silently."""

    def __init__(self, strategy: str, message: str) -> None:
        super().__init__(f"convergence strategy {strategy!r} failed: {message}")
        self.strategy = strategy


def _go(reason: str, code: str = "continue") -> Decision:
    return Decision(action="continue", reason=reason, code=code)


def _stop(reason: str, code: str, passed: bool = False) -> Decision:
    return Decision(action="stop", reason=reason, code=code, passed=passed)


def _limits(state: ConvergenceState) -> Decision | None:
    if state.stop_requested:
        return _stop("an operator requested stop", "operator_stop", passed=bool(state.last and state.last.passed))
    if state.wall_clock_exceeded:
        return _stop("the wall-clock limit is reached", "limit.wall_clock")
    if state.budget_exceeded:
        return _stop("the budget is exhausted", "limit.budget")
    return None


def _at_max(state: ConvergenceState, cap: int | None = None) -> Decision | None:
    limit = min(state.max_iterations, cap) if cap else state.max_iterations
    if state.iteration >= limit:
        which = "max_iterations" if limit == state.max_iterations else "strategy cap"
        return _stop(f"gates failed and the limit of {limit} iteration(s) ({which}) is reached", "limit.max_iterations")
    return None


def _unchanged_streak(history: list[IterationObservation]) -> int:
    streak = 0
    for obs in reversed(history):
        if obs.changed:
            break
        streak += 1
    return streak


def similarity(a: str, b: str) -> float:
    """Deterministic similarity in 0..1: difflib ratio over the first words of each text, case-folded."""
    ta = re.findall(r"\w+|[^\w\s]", a.lower())[:SIMILARITY_TOKENS]
    tb = re.findall(r"\w+|[^\w\s]", b.lower())[:SIMILARITY_TOKENS]
    if not ta and not tb:
        return 1.0
    return difflib.SequenceMatcher(None, ta, tb, autojunk=False).ratio()


# ---------------------------------------------------------------------------
# Strategies: called only when no limit applies and the iteration count is below max.
# ---------------------------------------------------------------------------


def _fixed(cfg: ConvergenceConfig, state: ConvergenceState) -> Decision:
    last = state.last
    if last and last.passed:
        return _stop("all gates passed", "passed", passed=True)
    return _at_max(state) or _go(f"gates failed; iteration {state.iteration} of {state.max_iterations}")


def _hybrid(cfg: ConvergenceConfig, state: ConvergenceState) -> Decision:
    last = state.last
    if last and last.passed:
        return _stop("all gates passed", "passed", passed=True)
    cap = cfg.base_iterations + cfg.bonus_iterations
    if hit := _at_max(state, cap):
        return hit
    streak = _unchanged_streak(state.history)
    if streak >= cfg.unchanged_limit:
        return _stop(f"the snapshot did not change for {streak} iteration(s)", "unchanged")
    if state.iteration < cfg.base_iterations:
        return _go(f"base iteration {state.iteration} of {cfg.base_iterations}")
    prev = state.history[-2].progress if len(state.history) >= 2 else 0.0
    rise = (last.progress if last else 0.0) - prev
    if rise >= cfg.progress_threshold:
        used = state.iteration - cfg.base_iterations + 1
        return _go(
            f"bonus iteration {used} of {cfg.bonus_iterations}: progress rose by {rise:.2f} "
            f"(≥ {cfg.progress_threshold:.2f}) to {last.progress if last else 0:.2f}",
            "bonus",
        )
    return _stop(
        f"base iterations used and progress rose by only {rise:.2f} (< {cfg.progress_threshold:.2f})", "no_progress"
    )


def _ralph(cfg: ConvergenceConfig, state: ConvergenceState) -> Decision:
    last = state.last
    message = (last.final_message or "") if last else ""
    signalled = next((p for p in cfg.completion_phrases if p.lower() in message.lower()), None)
    if last and last.passed and signalled:
        return _stop(f"the agent signalled completion ({signalled!r}) and all gates passed", "passed", passed=True)
    if hit := _at_max(state):
        if last and last.passed:
            return _stop(
                "gates pass but the agent never signalled completion; the iteration limit is reached",
                "limit.max_iterations",
                passed=True,
            )
        return hit
    window = [o.final_message or "" for o in state.history[-cfg.similarity_window :]]
    if len(window) == cfg.similarity_window and all(window):
        scores = [similarity(window[i], window[i + 1]) for i in range(len(window) - 1)]
        if min(scores) >= cfg.similarity_threshold:
            return _stop(
                f"loop detected: the last {cfg.similarity_window} final messages are ≥ "
                f"{cfg.similarity_threshold:.2f} similar (min {min(scores):.2f})",
                "loop_detected",
            )
    if signalled:
        return _go(f"the agent signalled completion ({signalled!r}) but the gates fail", "completion_rejected")
    if last and last.passed:
        return _go("gates pass but the agent has not signalled completion yet", "awaiting_completion")
    return _go("gates fail and the agent has not signalled completion")


def _adaptive(cfg: ConvergenceConfig, state: ConvergenceState) -> Decision:
    last = state.last
    if last and last.passed:
        return _stop("all gates passed", "passed", passed=True)
    if hit := _at_max(state):
        return hit
    if state.iteration < cfg.min_iterations or len(state.history) <= cfg.stall_window:
        return _go("still within the first iterations; no trend yet")
    before = max(o.progress for o in state.history[: -cfg.stall_window])
    recent = state.history[-cfg.stall_window :]
    best_recent = max(o.progress for o in recent)
    if all(not o.changed for o in recent):
        return _stop(f"stalled: the snapshot did not change in the last {cfg.stall_window} iteration(s)", "stalled")
    if best_recent < before + cfg.min_improvement:
        return _stop(
            f"stalled: best progress in the last {cfg.stall_window} iteration(s) is {best_recent:.2f}, "
            f"not above the earlier best {before:.2f} by {cfg.min_improvement:.2f}",
            "stalled",
        )
    return _go(f"improving: progress {before:.2f} → {best_recent:.2f}", "improving")


def _manual(cfg: ConvergenceConfig, state: ConvergenceState) -> Decision:
    # An operator stop was already handled by _limits; passing gates do not end a manual run.
    if hit := _at_max(state):
        last = state.last
        if last and last.passed:
            return _stop("the iteration limit is reached; the last iteration passed", "limit.max_iterations", True)
        return hit
    status = "pass" if state.last and state.last.passed else "fail"
    return _go(f"manual: gates {status}; waiting for an operator stop", "awaiting_operator")


STRATEGIES: dict[str, Callable[[ConvergenceConfig, ConvergenceState], Decision]] = {
    "fixed": _fixed,
    "hybrid": _hybrid,
    "ralph": _ralph,
    "adaptive": _adaptive,
    "manual": _manual,
}


def decide(config: ConvergenceConfig, state: ConvergenceState) -> Decision:
    """The decision after `state.iteration`; raises `StrategyError` instead of guessing."""
    if (limit := _limits(state)) is not None:
        return limit
    fn = STRATEGIES.get(config.strategy)
    if fn is None:
        raise StrategyError(config.strategy, "unknown strategy")
    try:
        decision = fn(config, state)
    except StrategyError:
        raise
    except Exception as exc:  # noqa: BLE001 - any bug in a strategy must surface as a classified failure
        raise StrategyError(config.strategy, f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(decision, Decision):
        raise StrategyError(config.strategy, f"returned {type(decision).__name__}, not a Decision")
    if decision.action == "continue" and state.iteration >= state.max_iterations:
        raise StrategyError(config.strategy, "tried to continue past max_iterations")
    return decision
