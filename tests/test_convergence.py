"""Convergence strategies: pure decisions, one scenario family per strategy, limits first."""

from __future__ import annotations

import pytest

from workflows import convergence as conv
from workflows.convergence import (
    ConvergenceConfig,
    ConvergenceState,
    Decision,
    IterationObservation,
    StrategyError,
    decide,
    similarity,
)


def state(*obs: tuple, max_iterations: int = 10, **kw) -> ConvergenceState:
    """obs: (progress, changed, passed[, final_message]) per iteration, oldest first."""
    history = [
        IterationObservation(
            iteration=i, progress=o[0], changed=o[1], passed=o[2], final_message=o[3] if len(o) > 3 else None
        )
        for i, o in enumerate(obs, start=1)
    ]
    return ConvergenceState(iteration=len(history), max_iterations=max_iterations, history=history, **kw)


def cfg(strategy: str, **kw) -> ConvergenceConfig:
    return ConvergenceConfig(strategy=strategy, **kw)


# -- limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["fixed", "hybrid", "ralph", "adaptive", "manual"])
def test_limits_always_win(strategy):
    improving = state((0.1, True, False), (0.5, True, False))
    for flag, code in [("wall_clock_exceeded", "limit.wall_clock"), ("budget_exceeded", "limit.budget")]:
        d = decide(cfg(strategy), improving.model_copy(update={flag: True}))
        assert d.action == "stop" and d.code == code
    d = decide(cfg(strategy), improving.model_copy(update={"stop_requested": True}))
    assert d.action == "stop" and d.code == "operator_stop"
    at_max = state((0.1, True, False), (0.5, True, False), max_iterations=2)
    d = decide(cfg(strategy), at_max)
    assert d.action == "stop" and d.code == "limit.max_iterations"


# -- fixed ----------------------------------------------------------------------------


def test_fixed():
    assert decide(cfg("fixed"), state((0.2, True, False))).action == "continue"
    d = decide(cfg("fixed"), state((0.2, True, False), (1.0, True, True)))
    assert d.action == "stop" and d.code == "passed" and d.passed
    d = decide(cfg("fixed"), state((0.2, True, False), (0.2, False, False), (0.2, False, False), max_iterations=3))
    assert d.code == "limit.max_iterations" and not d.passed
    # fixed ignores stalls: it only counts
    assert decide(cfg("fixed"), state((0.2, False, False), (0.2, False, False))).action == "continue"


# -- hybrid ---------------------------------------------------------------------------


def test_hybrid_base_iterations_then_bonus_while_progress_rises():
    c = cfg("hybrid", base_iterations=2, bonus_iterations=2, progress_threshold=0.1)
    assert decide(c, state((0.1, True, False))).reason.startswith("base iteration 1")
    d = decide(c, state((0.1, True, False), (0.4, True, False)))
    assert d.action == "continue" and d.code == "bonus"
    d = decide(c, state((0.1, True, False), (0.4, True, False), (0.45, True, False)))
    assert d.action == "stop" and d.code == "no_progress"
    d = decide(c, state((0.1, True, False), (0.4, True, False), (0.6, True, False)))
    assert d.action == "continue" and "bonus iteration 2 of 2" in d.reason
    d = decide(c, state((0.1, True, False), (0.4, True, False), (0.6, True, False), (0.9, True, False)))
    assert d.action == "stop" and "strategy cap" in d.reason
    d = decide(c, state((0.1, True, False), (1.0, True, True)))
    assert d.code == "passed"


def test_hybrid_stops_when_the_snapshot_does_not_change():
    c = cfg("hybrid", base_iterations=5, unchanged_limit=2)
    assert decide(c, state((0.1, True, False), (0.1, False, False))).action == "continue"
    d = decide(c, state((0.1, True, False), (0.1, False, False), (0.1, False, False)))
    assert d.action == "stop" and d.code == "unchanged" and "2 iteration" in d.reason


# -- ralph ----------------------------------------------------------------------------


def test_ralph_needs_completion_signal_and_passing_gates():
    c = cfg("ralph", completion_phrases=["ALL DONE"])
    d = decide(c, state((1.0, True, True, "I changed things")))
    assert d.action == "continue" and d.code == "awaiting_completion"
    d = decide(c, state((0.5, True, False, "all done!")))
    assert d.action == "continue" and d.code == "completion_rejected"
    d = decide(c, state((0.5, True, False, "x"), (1.0, True, True, "Everything works. ALL DONE")))
    assert d.action == "stop" and d.passed and "ALL DONE" in d.reason


def test_ralph_detects_a_loop_by_output_similarity():
    c = cfg("ralph", similarity_window=3, similarity_threshold=0.9)
    msg = "I tried to fix the failing test in parser.py by adjusting the regex, but it still fails."
    looping = state((0.5, True, False, msg), (0.5, True, False, msg + " "), (0.5, True, False, msg.replace(".", "!")))
    d = decide(c, looping)
    assert d.action == "stop" and d.code == "loop_detected"
    varied = state(
        (0.2, True, False, "Added the parser skeleton."),
        (0.4, True, False, "Implemented tokenizer and fixed two tests."),
        (0.6, True, False, msg),
    )
    assert decide(c, varied).action == "continue"


def test_similarity_is_deterministic():
    assert similarity("Hello  World", "hello world") == 1.0
    assert similarity("", "") == 1.0
    a, b = "fix the test " * 3000, "fix a test " * 3000  # long and repetitive: must stay fast
    assert similarity(a, b) == similarity(a, b) < 1.0


# -- adaptive -------------------------------------------------------------------------


def test_adaptive_continues_while_improving_and_stops_on_stall():
    c = cfg("adaptive", stall_window=2, min_improvement=0.05)
    assert decide(c, state((0.1, True, False))).action == "continue"
    d = decide(c, state((0.1, True, False), (0.3, True, False), (0.5, True, False)))
    assert d.action == "continue" and d.code == "improving"
    d = decide(c, state((0.1, True, False), (0.5, True, False), (0.52, True, False), (0.4, True, False)))
    assert d.action == "stop" and d.code == "stalled" and "0.52" in d.reason
    d = decide(c, state((0.1, True, False), (0.5, True, False), (0.9, False, False), (0.9, False, False)))
    assert d.action == "stop" and "did not change" in d.reason


def test_adaptive_respects_min_iterations():
    c = cfg("adaptive", stall_window=1, min_iterations=4)
    assert decide(c, state((0.1, True, False), (0.1, True, False), (0.1, True, False))).action == "continue"
    assert decide(c, state(*[(0.1, True, False)] * 4)).action == "stop"


# -- manual ---------------------------------------------------------------------------


def test_manual_continues_until_the_operator_stops():
    c = cfg("manual")
    d = decide(c, state((1.0, True, True)))
    assert d.action == "continue" and d.code == "awaiting_operator"
    d = decide(c, state((1.0, True, True), stop_requested=True))
    assert d.action == "stop" and d.code == "operator_stop" and d.passed
    d = decide(c, state((0.0, True, False), stop_requested=True))
    assert d.action == "stop" and not d.passed


# -- errors ---------------------------------------------------------------------------


def test_a_strategy_that_raises_is_a_strategy_error(monkeypatch):
    def broken(config, st):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setitem(conv.STRATEGIES, "adaptive", broken)
    with pytest.raises(StrategyError, match="adaptive.*ZeroDivisionError"):
        decide(cfg("adaptive"), state((0.1, True, False)))


def test_a_strategy_cannot_continue_past_the_limit(monkeypatch):
    monkeypatch.setitem(conv.STRATEGIES, "fixed", lambda c, s: Decision(action="continue", reason="x", code="x"))
    with pytest.raises(StrategyError, match="past max_iterations"):
        decide(cfg("fixed"), state((0.1, True, False), max_iterations=1))


def test_state_validation():
    with pytest.raises(ValueError):
        ConvergenceState(iteration=2, max_iterations=3, history=[IterationObservation(iteration=1)])
    with pytest.raises(ValueError):
        ConvergenceConfig(strategy="random")
